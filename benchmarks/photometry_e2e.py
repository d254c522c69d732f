"""End to end: simulate a scan map -> reprocess -> mosaic -> photometry, scored against the truth.

For one band, a scan map with many point sources is simulated (``mipssim``), reprocessed to BCDs,
mosaicked (``reprocess.mosaic``) and measured (``reprocess.photometry.catalog.measure``, PRF fit
and apertures, ``psf="simulator"``).  The truth is ``truth.h5``'s source table: ``flux_jy_<band>``
(plus ``leak_jy_160`` at 160 um, which the simulator adds at the source's position).  The simulator
renders a source with exactly that flux through the PRF and its detectors respond to it as to a
monochromatic flux at the reference wavelength (it integrates no bandpass; FLUXCONV was derived from
stars rendered the same way), so the truth is what a *quoted* (not colour-corrected) flux must
equal, whatever the source's spectrum: no colour correction is applied in the comparison (for the
3000 K sources used, K = 0.998, 0.999 at 24, 70 um; 0.986 at 160 um for 100 K).

Printed per method:

* bias of sources with true S/N > 20 (S/N = true flux / the error of a forced fit at the true
  position, so the sample is not selected on the measurement): inverse-variance weighted mean and
  median of measured / true, with the weighted mean's standard error; also without flagged sources;
* pulls (measured - true) / flux_err of matched sources, by true S/N: mean, standard deviation and
  robust (1.4826 MAD) spread; also for isolated sources (no other true source within 2 FWHM
  brighter than the source's own 1-sigma noise), which separates the error model from confusion;
* completeness (detected fraction) and median flux ratio of the detected, in bins of true S/N down
  to 3 sigma, and the detections matched to no source.

Usage (each step is skipped when its output exists; ``--fresh`` redoes them)::

    python benchmarks/photometry_e2e.py --band 24 --out /tmp/e2e24 --legs 4 --leg-arcmin 20 \\
        --n-sources 1500 --flux-min 1e-4 --flux-max 0.05
    python benchmarks/photometry_e2e.py --band 160 --out /tmp/e2e160 --rate slow --legs 8 \\
        --leg-arcmin 15 --n-sources 120 --flux-min 0.05 --flux-max 2.0

At 160 um use ``--rate slow``: at the medium rate a DCE advances 31" along the scan and the array's
two rows (16" each, a blank row between) leave 13" gaps every 31", so most fit discs are partly
without data (FEW_FIT_PIXELS) and the benchmark has nothing to score.  ``--background-scope`` and
``--background-order`` override the PRF fit's background model (default: the band's,
``reprocess.photometry.catalog.DEFAULT_BACKGROUND``).
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import tomllib
from astropy import units as u
from astropy.table import QTable
from scipy.spatial import cKDTree

from calibration.psf import CALIBRATOR_TEMPERATURE_K
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.mosaic import make_mosaic, write_mosaic
from reprocess.photometry.catalog import measure, read_mosaic
from reprocess.photometry.flags import PhotFlag
from reprocess.pipeline import reprocess

FATAL = PhotFlag.OFF_IMAGE | PhotFlag.NO_COVERAGE | PhotFlag.MASKED | PhotFlag.FEW_SKY_PIXELS \
    | PhotFlag.FEW_FIT_PIXELS
SNR_BINS = (3, 4, 5, 7, 10, 20, 50, 200, np.inf)


def build(args) -> Path:
    """Simulate, reprocess and mosaic into ``args.out`` (skipping what exists)."""
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    overrides = {"band": args.band, "mode": "scan", "seed": args.seed, "scan_legs": args.legs,
                 "scan_leg_arcmin": args.leg_arcmin, "scan_overscan_arcmin": 0.0,
                 "scan_rate": args.rate, "n_sources": args.n_sources, "flux_min_jy": args.flux_min,
                 "flux_max_jy": args.flux_max,
                 "source_temperature_k": float(CALIBRATOR_TEMPERATURE_K[args.band]),
                 "blob_peak_mjysr": args.blob_mjysr}
    t0 = time.perf_counter()
    if not (out / "truth.h5").exists():
        simulate(load_config(**overrides), out)
    t1 = time.perf_counter()
    if not (out / "bcd").is_dir():
        reprocess(out)
    t2 = time.perf_counter()
    if not (out / "mosaic.fits").exists():
        write_mosaic(make_mosaic(sorted((out / "bcd").glob("*_bcd.fits"))), out / "mosaic.fits")
    t3 = time.perf_counter()
    print(f"{out}: simulate {t1 - t0:.0f} s, reprocess {t2 - t1:.0f} s, mosaic {t3 - t2:.0f} s")
    return out


def truth_table(obs: Path, band: int) -> QTable:
    with h5py.File(obs / "truth.h5", "r") as fh:
        src = fh["sources"][()]
        cfg = tomllib.loads(fh.attrs["config"])
    flux = np.asarray(src[f"flux_jy_{band}"], dtype=float)
    if band == 160 and cfg.get("include_leak", True):
        flux = flux + np.asarray(src["leak_jy_160"], dtype=float)
    t = QTable()
    t["id"] = np.arange(1, len(src) + 1)
    t["ra"] = np.asarray(src["ra"], dtype=float) * u.deg
    t["dec"] = np.asarray(src["dec"], dtype=float) * u.deg
    t["flux"] = flux * 1e6 * u.uJy
    return t


def match(truth_xy, true_flux, det_xy, radius) -> np.ndarray:
    """Index of the detection matched to each true source (-1: none), brightest sources first."""
    out = np.full(len(truth_xy), -1)
    if len(det_xy) == 0:
        return out
    tree = cKDTree(det_xy)
    taken = np.zeros(len(det_xy), dtype=bool)
    for k in np.argsort(-true_flux):
        cand = [j for j in tree.query_ball_point(truth_xy[k], radius) if not taken[j]]
        if cand:
            d = [np.hypot(*(det_xy[j] - truth_xy[k])) for j in cand]
            j = cand[int(np.argmin(d))]
            out[k] = j
            taken[j] = True
    return out


def robust(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else np.nan


def score(obs: Path, band: int, method: str, nsigma: float, background: dict | None = None) -> dict:
    mos = read_mosaic(obs / "mosaic.fits")
    t = CALIBRATOR_TEMPERATURE_K[band]
    truth = truth_table(obs, band)
    opts = dict(background or {}) if method == "prf" else {}
    forced = measure(mos, method=method, psf="simulator", temperature_k=t, positions=truth, **opts)
    usable = (np.asarray(forced["flags"]) & FATAL) == 0
    usable &= np.isfinite(forced["flux_err"].value) & (forced["flux_err"].value > 0)
    t0 = time.perf_counter()
    cat = measure(mos, method=method, psf="simulator", temperature_k=t, nsigma=nsigma, **opts)
    seconds = time.perf_counter() - t0
    true_f = truth["flux"].value
    # noise-only error for the S/N scale (the PRF fit's flux_err also grows with its misfit)
    sigma = forced["flux_err_stat" if "flux_err_stat" in forced.colnames else "flux_err"].value
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_true = true_f / sigma
    fwhm = cat.meta["prf_fwhm_arcsec"] / cat.meta["pixel_arcsec"]
    idx = match(np.c_[forced["x"], forced["y"]], np.where(usable, true_f, -np.inf),
                np.c_[cat["x"], cat["y"]], 0.5 * fwhm)
    idx[~usable] = -1
    got = idx >= 0
    meas = np.full(len(truth), np.nan)
    err = np.full(len(truth), np.nan)
    flags = np.zeros(len(truth), dtype=int)
    meas[got] = cat["flux"].value[idx[got]]
    err[got] = cat["flux_err"].value[idx[got]]
    err_stat = np.full(len(truth), np.nan)
    if "flux_err_stat" in cat.colnames:
        err_stat[got] = cat["flux_err_stat"].value[idx[got]]
    flags[got] = np.asarray(cat["flags"])[idx[got]]
    matched_det = np.zeros(len(cat), dtype=bool)
    matched_det[idx[got]] = True
    inside = (np.asarray(cat["flags"]) & FATAL) == 0    # detections away from the coverage edge
    # isolated: no other true source within 2 FWHM brighter than this one's 1-sigma noise
    tx, ty = np.asarray(forced["x"]), np.asarray(forced["y"])
    pairs = cKDTree(np.c_[tx, ty]).query_pairs(2 * fwhm, output_type="ndarray")
    isolated = np.ones(len(truth), dtype=bool)
    for i, j in pairs:
        if true_f[j] > sigma[i]:
            isolated[i] = False
        if true_f[i] > sigma[j]:
            isolated[j] = False
    return {"method": method, "n_true": int(usable.sum()), "truth": true_f, "snr": snr_true,
            "usable": usable, "got": got & np.isfinite(meas), "meas": meas, "err": err,
            "flags": flags, "spurious": int((~matched_det & inside).sum()), "n_det": len(cat),
            "seconds": seconds, "spurious_snr": np.asarray(cat["snr"])[~matched_det & inside],
            "meta": cat.meta, "isolated": isolated, "err_stat": err_stat}


def report(res: dict) -> None:
    f, m, e, snr = res["truth"], res["meas"], res["err"], res["snr"]
    got, flags = res["got"], res["flags"]
    print(f"\n== {res['method']}: {res['n_true']} true sources on the mosaic, {res['n_det']} "
          f"detections ({res['seconds']:.2f} s); {res['spurious']} detections match no source; "
          f"median 1-sigma flux noise {np.median(f[res['usable']] / snr[res['usable']]):.4g} uJy")
    for label, sel in (("all", got), ("unflagged", got & ((flags & ~PhotFlag.FIXED_POSITION) == 0))):
        s = sel & (snr > 20)
        if s.sum() < 3:
            continue
        ratio = m[s] / f[s]
        w = (f[s] / e[s]) ** 2
        mean = np.sum(w * ratio) / np.sum(w)
        sem = 1.0 / np.sqrt(np.sum(w))
        print(f"S/N>20 ({label}, n={s.sum()}): weighted mean ratio {mean:.4f} +- {sem:.4f}, median "
              f"{np.median(ratio):.4f}")
    print(" true S/N    n_true  complete  n_det  median ratio   pull mean  pull std  robust")
    pull = (m - f) / e
    for lo, hi in itertools.pairwise(SNR_BINS):
        inbin = res["usable"] & (snr >= lo) & (snr < hi)
        det = inbin & got
        if inbin.sum() == 0:
            continue
        p = pull[det]
        print(f" {lo:>4g}-{hi:<5g} {inbin.sum():7d}  {det.sum() / inbin.sum():8.3f}  {det.sum():5d}  "
              f"{np.median(m[det] / f[det]) if det.any() else np.nan:12.4f}   "
              f"{np.mean(p) if det.any() else np.nan:9.3f}  {np.std(p) if det.any() else np.nan:8.3f}"
              f"  {robust(p):6.3f}")
    stat = (m - f) / res["err_stat"]
    for label, sel, pl in (("all", got, pull), ("isolated", got & res["isolated"], pull),
                           ("all, noise-only error", got, stat),
                           ("isolated, noise-only error", got & res["isolated"], stat)):
        s5, s20 = sel & (snr > 5), sel & (snr > 20)
        if s5.sum() < 3 or not np.isfinite(pl[s5]).all():
            continue
        print(f"pulls, {label}: true S/N > 5 (n={s5.sum()}): mean {np.mean(pl[s5]):+.3f}, std "
              f"{np.std(pl[s5]):.3f}, robust {robust(pl[s5]):.3f};  S/N > 20 (n={s20.sum()}): "
              f"mean {np.mean(pl[s20]):+.3f}, std {np.std(pl[s20]):.3f}, robust "
              f"{robust(pl[s20]):.3f}")
    s = got & res["isolated"] & (snr > 20)
    if s.sum() >= 3:
        ratio, w = m[s] / f[s], (f[s] / e[s]) ** 2
        print(f"S/N>20 isolated (n={s.sum()}): weighted mean ratio {np.sum(w * ratio) / np.sum(w):.4f} "
              f"+- {1 / np.sqrt(np.sum(w)):.4f}, median {np.median(ratio):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, choices=(24, 70, 160), required=True)
    ap.add_argument("--out", required=True, help="observation folder (made unless it exists)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--legs", type=int, default=2)
    ap.add_argument("--leg-arcmin", type=float, default=10.0)
    ap.add_argument("--rate", choices=("slow", "medium", "fast"), default="medium")
    ap.add_argument("--n-sources", type=int, default=300)
    ap.add_argument("--flux-min", type=float, default=1e-4, help="Jy")
    ap.add_argument("--flux-max", type=float, default=0.05, help="Jy")
    ap.add_argument("--nsigma", type=float, default=3.0, help="detection threshold")
    ap.add_argument("--blob-mjysr", type=float, default=0.0,
                    help="peak of the scene's extended Gaussian blob (default 0: it is not a point "
                         "source and not in the truth's source list)")
    ap.add_argument("--methods", nargs="+", default=["prf", "aperture"])
    ap.add_argument("--background-scope", choices=("group", "source"), default=None,
                    help="PRF fit background per fit group or per source (default: the band's)")
    ap.add_argument("--background-order", type=int, choices=(0, 1, 2), default=None,
                    help="PRF fit background polynomial order (default: the band's)")
    ap.add_argument("--fresh", action="store_true", help="remove --out first")
    args = ap.parse_args()
    obs = build(args)
    for method in args.methods:
        report(score(obs, args.band, method, args.nsigma,
                     {"background_scope": args.background_scope,
                      "background_order": args.background_order}))


if __name__ == "__main__":
    main()
