"""Flux the Ge high-pass filter removes, against the simulator's truth, with and without masking.

Needs a reprocessed 70 um scan map and the truth of the same map simulated without sources
(same seed, so the same pointing and background)::

    mips simulate --band 70 --mode scan --seed 7 --out /tmp/f70 --config cfg.toml
    mips reprocess /tmp/f70
    python benchmarks/ge_filter_loss.py /tmp/f70 [--window 15]

(``cfg.toml``: ``scan_legs = 2``, ``scan_leg_arcmin = 5.0``, ``n_sources = 20``.)  The script
simulates the source-free twin itself (the configuration in ``truth.h5`` with
``include_sources = false``), filters a copy of the
observation with :func:`reprocess.filtering.filter_observation` in each configuration and prints:

* point sources: per source, the sum over DCEs of the filtered BCD in a small aperture divided
  by the same sum of (unfiltered BCD - true background); median (and quartiles) over sources.
  "noise-free" applies the same filter, with the mask the run used, to the true sky stack and
  divides by the true source signal, so it shows the filter's loss without the noise;
* extended emission, pixels whose true source signal is < 0.05 MJy/sr: the mean true sky there,
  the mean of (filtered - true sky), and the fraction of the background's structure
  (true background minus its mean) that survives (least-squares slope of filtered on it; 1:
  what varies faster than the window passes, what is slower, including the mean, is removed);
* what the filter gains: away from sources, the RMS over pixels of each pixel's time-mean
  error (drift and calibration residuals that persist in a pixel), unfiltered (BCD - true sky)
  and filtered (fBCD - the same filter applied to the true sky), beside what noise alone
  (the BCDs' ``_bunc``) would give.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import tomllib
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.filtering import filter_observation, highpass

APERTURE_PIX = 1.5       # aperture radius, pixels (~15" at 70 um, about the FWHM)
AWAY_MJYSR = 0.05        # "away from sources": true source signal below this
CONFIGS = {              # label -> filter_observation options (sources filled in from truth)
    "no masking (1 pass)": dict(n_sigma=None),
    "no masking, no column filter": dict(n_sigma=None, column=False),
    "self-masked (2 passes, 3 sigma)": dict(n_sigma=3.0),
    "catalogue-masked + 2nd pass": dict(n_sigma=3.0, sources="truth"),
    "self-masked, no column filter": dict(n_sigma=3.0, column=False),
}


def _truth_stack(truth: Path, names: list[str]) -> np.ndarray:
    """True sky (MJy/sr) of each named DCE, stacked."""
    with h5py.File(truth) as f:
        return np.stack([f["dce"][n]["sky_mjysr"][:] for n in names])


def _aperture_sums(images: dict, wcss: list, ra: float, dec: float, good: np.ndarray):
    """Per image set, the aperture sums at (ra, dec) over DCEs whose aperture is all good."""
    yy, xx = np.mgrid[: good.shape[1], : good.shape[2]]
    sums = {k: 0.0 for k in images}
    n = 0
    for i, w in enumerate(wcss):
        x, y = w.all_world2pix([ra], [dec], 0)
        ap = (xx - x[0]) ** 2 + (yy - y[0]) ** 2 <= APERTURE_PIX ** 2
        if ap.sum() < 5 or not good[i][ap].all():
            continue
        n += 1
        for k, img in images.items():
            sums[k] += float(img[i][ap].sum())
    return sums, n


def _point_source_ratios(images: dict, wcss, sources, good) -> tuple[np.ndarray, np.ndarray]:
    """Filtered/unfiltered (noisy) and filtered-truth/true-source ratios, one per source."""
    noisy, clean = [], []
    for s in sources:
        sums, n = _aperture_sums(images, wcss, s["ra"], s["dec"], good)
        if n == 0:
            continue
        noisy.append(sums["filtered"] / sums["bcd_minus_bg"])
        clean.append(sums["filtered_truth"] / sums["source"])
    return np.array(noisy), np.array(clean)


def _extended(filtered: np.ndarray, sky: np.ndarray, background: np.ndarray,
              away: np.ndarray) -> tuple[float, float, float]:
    """Mean true sky, mean(filtered - true sky) and the structure kept, over ``away`` pixels."""
    f, t, b = filtered[away], sky[away], background[away]
    db = b - b.mean()
    return float(t.mean()), float((f - t).mean()), float((f * db).sum() / (db * db).sum())


def _pixel_offsets(err: np.ndarray, away: np.ndarray) -> tuple[float, float]:
    """RMS over pixels of each pixel's time-mean error (map mean removed), and RMS per value."""
    e = np.where(away, err, np.nan)
    seen = away.any(axis=0)
    per_pixel = np.nanmean(e[:, seen], axis=0)
    vals = e[np.isfinite(e)]
    return float(np.std(per_pixel)), float(np.std(vals))


def _noise_floor(unc: np.ndarray, away: np.ndarray) -> float:
    """The RMS over pixels of a time-mean that noise alone (``unc``) would give."""
    n = away.sum(axis=0)
    var = np.where(away, unc, 0.0) ** 2
    ok = n > 0
    return float(np.sqrt(np.mean(var.sum(axis=0)[ok] / n[ok] ** 2)))


def _run(obs: Path, label: str, opts: dict, truth: dict, sources) -> tuple:
    """Filter ``obs`` with ``opts`` and measure against ``truth``."""
    opts = dict(opts)
    if opts.pop("sources", None) == "truth":
        opts["sources"] = (sources["ra"], sources["dec"])
    rep = filter_observation(obs, overwrite=True, **opts)
    names = [p.name[: -len("_fbcd.fits")] for p in rep.written]
    filt = np.stack([fits.getdata(p).astype(np.float64) for p in rep.written])
    bcd = np.stack([fits.getdata(p.with_name(n + "_bcd.fits")).astype(np.float64)
                    for p, n in zip(rep.written, names)])
    sky, bg = (np.where(np.isfinite(bcd), s, np.nan) for s in truth["stacks"](names))
    times = np.array([fits.getheader(p)["MJD_OBS"] for p in rep.written]) * 86400.0
    ftruth = highpass(sky, times, mask=rep.mask, window_dces=opts.get("window_dces", 15),
                      column=opts.get("column", True), n_sigma=None)
    good = np.isfinite(bcd) & np.isfinite(filt)
    wcss = [WCS(fits.getheader(p)) for p in rep.written]
    images = {"filtered": filt, "bcd_minus_bg": bcd - bg, "filtered_truth": ftruth,
              "source": sky - bg}
    noisy, clean = _point_source_ratios(images, wcss, sources, good)
    away = good & (sky - bg < AWAY_MJYSR)
    ext = (_extended(filt, sky, bg, away) + _extended(ftruth, sky, bg, away)[2:]
           + _pixel_offsets(filt - ftruth, away) + _pixel_offsets(bcd - sky, away))
    unc = np.stack([fits.getdata(p.with_name(n + "_bunc.fits")).astype(np.float64)
                    for p, n in zip(rep.written, names)])
    ext = ext + (_noise_floor(unc, away & np.isfinite(unc)),)
    return label, noisy, clean, ext, rep.masked_fraction


def _print(rows, n_sources: int) -> None:
    """The table."""
    print(f"point sources: aperture r = {APERTURE_PIX} px, ratio filtered / unfiltered "
          f"(median [quartiles] over {n_sources} sources)")
    print(f"{'configuration':<33} {'BCD (noisy)':>22} {'noise-free':>22} {'masked':>7}")
    for label, noisy, clean, _, frac in rows:
        q = [np.percentile(noisy, p) for p in (50, 25, 75)]
        c = [np.percentile(clean, p) for p in (50, 25, 75)]
        print(f"{label:<33} {q[0]:>6.3f} [{q[1]:.3f},{q[2]:.3f}] {c[0]:>8.3f} "
              f"[{c[1]:.3f},{c[2]:.3f}] {100 * frac:>6.1f}%")
    print(f"\nextended emission (true source signal < {AWAY_MJYSR} MJy/sr), MJy/sr")
    print(f"{'configuration':<33} {'mean true sky':>14} {'mean(filt - true)':>18} "
          f"{'structure kept':>15} {'(noise-free)':>13}")
    for label, _, _, (t, d, kept, kept_clean, *_), _ in rows:
        print(f"{label:<33} {t:>14.3f} {d:>18.3f} {kept:>15.3f} {kept_clean:>13.3f}")
    base = rows[0][3][6:9]
    print(f"\nerror against truth away from sources, MJy/sr (noise alone: {base[2]:.3f} / -)")
    print(f"{'':<33} {'pixel time-mean RMS':>20} {'RMS per value':>14}")
    print(f"{'unfiltered: BCD - true sky':<33} {base[0]:>20.3f} {base[1]:>14.3f}")
    for label, _, _, ext, _ in rows:
        print(f"{label:<33} {ext[4]:>20.3f} {ext[5]:>14.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obs", type=Path, help="reprocessed 70 um scan map (with truth.h5)")
    ap.add_argument("--window", type=int, nargs="+", default=[15],
                    help="running-median window(s), DCEs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        twin = _simulate_twin(args.obs, Path(tmp) / "nosrc")
        work = Path(tmp) / "obs"
        shutil.copytree(args.obs, work, ignore=shutil.ignore_patterns("*_fbcd.fits", "raw"))
        truth = {"stacks": lambda names: (_truth_stack(args.obs / "truth.h5", names),
                                          _truth_stack(twin / "truth.h5", names))}
        with h5py.File(args.obs / "truth.h5") as f:
            sources = f["sources"][:]
        for window in args.window:
            rows = [_run(work, label, {**opts, "window_dces": window}, truth, sources)
                    for label, opts in CONFIGS.items()]
            print(f"\n{args.obs}: {len(sources)} sources, window {window} DCEs")
            _print(rows, len(sources))


def _simulate_twin(obs: Path, out: Path) -> Path:
    """The same observation simulated without sources (its truth is the true background)."""
    with h5py.File(obs / "truth.h5") as f:
        cfg = tomllib.loads(f.attrs["config"])
    cfg["include_sources"] = False
    simulate(load_config(**cfg), out)
    return out


if __name__ == "__main__":
    main()
