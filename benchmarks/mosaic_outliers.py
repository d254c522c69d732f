"""Cosmic rays left in a mosaic, against the same observation simulated without cosmic rays.

The simulator draws every effect from its own random stream, so an observation simulated again with
``include_cosmic_rays = false`` (same seed) differs from the first by the cosmic rays alone: a BCD of
the first minus the same BCD of the second is each pixel's cosmic-ray charge, and a mosaic of the
first minus the same mosaic of the second is what the cosmic rays left in it.  Printed, over mosaic
pixels covered by >= 3 BCDs:

* the test's figure (``tests/test_mosaic.py``): mosaic pixels the cosmic rays moved by more than 3x
  UNC without rejection ("hit"), and the fraction of them within 3x UNC of the clean data's mosaic
  with rejection ("removed"), on and off sources (within / beyond ``--source-radius`` of a truth
  source) and by coverage;
* BCD-frame figures (with the rejection mask of each BCD): BCD pixels by their cosmic-ray charge in
  units of their own uncertainty, and the fraction of each class the rejection flagged; the clean
  data's flagged fraction (good pixels lost);
* point sources: peak (above a local median background) and aperture flux of every truth source
  with coverage >= 3 in the mosaic with cosmic rays and rejection, over the clean data's mosaic
  without rejection;
* wall time of the rejecting mosaic with cosmic rays.

::

    mips simulate --band 24 --mode scan --seed 501 --out s24 && mips reprocess s24
    printf 'include_cosmic_rays = false\\n' > nocr.toml
    mips simulate --band 24 --mode scan --seed 501 --config nocr.toml --out s24c && mips reprocess s24c
    python benchmarks/mosaic_outliers.py s24 s24c [--dce 600:1010]
"""
from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from reprocess.mosaic import make_mosaic


def _paths(obs: Path, dce: str | None) -> list[Path]:
    paths = sorted((obs / "bcd").glob("*_bcd.fits"))
    if dce:
        lo, hi = (int(v) for v in dce.split(":"))
        paths = [p for p in paths if lo <= int(p.name.split("_")[4]) < hi]
    return paths


class MaskStats:
    """Rejection masks of one run, scored against the cosmic-ray charge (hit - clean BCD)."""

    EDGES = (0.0, 3.0, 5.0, 10.0, 30.0, np.inf)   # |charge| / unc classes

    def __init__(self, clean_dir: Path | None):
        self.clean_dir = clean_dir
        self.counts = np.zeros((2, len(self.EDGES) - 1), np.int64)   # [all, flagged] per class
        self.flagged = 0
        self.pixels = 0

    def __call__(self, path: Path, flags: np.ndarray, cards=()) -> None:
        rejected = np.asarray(flags) != 0
        self.flagged += int(rejected.sum())
        self.pixels += rejected.size
        if self.clean_dir is None:
            return
        hit = fits.getdata(path).astype(float)
        clean = fits.getdata(self.clean_dir / path.name).astype(float)
        unc = fits.getdata(path.with_name(path.name.replace("_bcd.", "_bunc.")))
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = np.abs(hit - clean) / unc
        ok = np.isfinite(snr)
        cls = np.digitize(snr[ok], self.EDGES) - 1
        self.counts[0] += np.bincount(cls, minlength=len(self.EDGES))[: len(self.EDGES) - 1]
        self.counts[1] += np.bincount(cls[rejected[ok]], minlength=len(self.EDGES))[: len(self.EDGES) - 1]

    def report(self, label: str) -> None:
        print(f"  {label}: {self.flagged} BCD pixels flagged of {self.pixels} "
              f"({self.flagged / max(self.pixels, 1):.3%})")
        if self.clean_dir is None:
            return
        for k in range(len(self.EDGES) - 1):
            n, f = self.counts[:, k]
            print(f"    cosmic-ray charge {self.EDGES[k]:>4g}-{self.EDGES[k + 1]:<4g} x unc: "
                  f"{n:8d} BCD pixels, flagged {f / max(n, 1):7.2%}")


def _mosaic(paths, reject: bool, stats: MaskStats | None = None):
    kwargs = {}
    if "on_rmask" in inspect.signature(make_mosaic).parameters:   # earlier versions had no masks
        kwargs["on_rmask"] = stats
    t0 = time.perf_counter()
    hdul = make_mosaic(paths, reject_sigma=5.0 if reject else None, **kwargs)
    return hdul, time.perf_counter() - t0


def _sources(obs: Path, wcs: WCS, shape, band: int):
    with h5py.File(obs / "truth.h5", "r") as truth:
        src = truth["sources"][()]
    x, y = wcs.all_world2pix(src["ra"], src["dec"], 0)
    inside = (x >= 0) & (y >= 0) & (x < shape[1] - 1) & (y < shape[0] - 1)
    return x[inside], y[inside], src[f"flux_jy_{band}"][inside]


def _photometry(image, x, y, radius_pix: float):
    """Peak above the local median (annulus 2-3 radii) and aperture sum minus that background."""
    yy, xx = np.indices(image.shape)
    peaks, fluxes = [], []
    for xi, yi in zip(x, y):
        r = np.hypot(xx - xi, yy - yi)
        ap, ann = r <= radius_pix, (r > 2 * radius_pix) & (r <= 3 * radius_pix)
        bkg = np.nanmedian(image[ann])
        core = r <= 1.5
        peaks.append(np.nanmax(image[core]) - bkg)
        fluxes.append(np.nansum(image[ap] - bkg))
    return np.array(peaks), np.array(fluxes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("obs", help="reprocessed simulated observation (with cosmic rays)")
    ap.add_argument("clean", help="the same observation simulated with include_cosmic_rays = false")
    ap.add_argument("--dce", help="only DCENUMs lo:hi (e.g. a few legs of a scan map)")
    ap.add_argument("--source-radius", type=float, default=None,
                    help="on-source radius, arcsec (default 2 FWHM: 12, 36, 80 at 24, 70, 160 um)")
    args = ap.parse_args()
    obs, clean = Path(args.obs), Path(args.clean)
    hit_paths, clean_paths = _paths(obs, args.dce), _paths(clean, args.dce)
    assert [p.name for p in hit_paths] == [p.name for p in clean_paths], "BCD sets differ"
    stats_hit, stats_clean = MaskStats(clean / "bcd"), MaskStats(None)
    hr, t_hr = _mosaic(hit_paths, True, stats_hit)
    hn, _ = _mosaic(hit_paths, False)
    cr, _ = _mosaic(clean_paths, True, stats_clean)
    cn, _ = _mosaic(clean_paths, False)
    band = int(hr[0].header["BAND"])
    pix = float(hr[0].header["PIXSCAL"])
    radius = args.source_radius or {24: 12.0, 70: 36.0, 160: 80.0}[band]
    wcs = WCS(hr[0].header)
    shape = hr[0].data.shape
    unc, cov = cr["UNC"].data, cr["COV"].data
    hit = np.abs(hn[0].data - cn[0].data) > 3 * unc
    left = hit & (np.abs(hr[0].data - cr[0].data) > 3 * unc)
    deep = cov >= 3
    x, y, flux = _sources(obs, wcs, shape, band)
    yy, xx = np.indices(shape)
    near = np.zeros(shape, bool)
    for xi, yi in zip(x, y):
        near |= np.hypot(xx - xi, yy - yi) <= radius / pix
    print(f"{obs} vs {clean}: {hr[0].header['NINPUT']} {band} um BCDs -> {shape} mosaic; "
          f"rejecting mosaic in {t_hr:.1f} s")
    print(f"  mosaic pixels with coverage >= 3: {deep.sum()}; moved > 3 UNC by cosmic rays (hit), "
          f"left > 3 UNC after rejection (left)")
    classes = (("all", deep), ("off-source", deep & ~near), (f"on-source (<{radius:g}\")", deep & near),
               ("coverage 3-9", deep & (cov < 10)), ("coverage >= 10", cov >= 10))
    for name, sel in classes:
        n_hit, n_left = int((hit & sel).sum()), int((left & sel).sum())
        print(f"    {name:22s} hit {n_hit:7d} left {n_left:6d} removed {1 - n_left / max(n_hit, 1):8.3%}")
    stats_hit.report("with cosmic rays")
    stats_clean.report("clean data")
    keep = np.array([deep[int(round(yi)), int(round(xi))] for xi, yi in zip(x, y)], bool)
    x, y, flux = x[keep], y[keep], flux[keep]
    r_ap = {24: 7.0, 70: 16.0, 160: 32.0}[band] / pix
    p_hr, f_hr = _photometry(hr[0].data, x, y, r_ap)
    p_ref, f_ref = _photometry(cn[0].data, x, y, r_ap)
    peak_ratio, flux_ratio = p_hr / p_ref - 1, f_hr / f_ref - 1
    order = np.argsort(flux)[::-1]
    print(f"  {keep.sum()} truth sources with coverage >= 3: (cosmic rays + rejection) / (clean, no "
          f"rejection) - 1, peak above local background and {r_ap * pix:g}\" aperture flux")
    for k in order:
        print(f"    {flux[k] * 1e3:8.2f} mJy  peak {p_ref[k]:9.3f} MJy/sr {peak_ratio[k]:+8.3%}  "
              f"flux {flux_ratio[k]:+8.3%}")
    if keep.any():
        print(f"    max |peak change| {np.max(np.abs(peak_ratio)):.3%}, max |flux change| "
              f"{np.max(np.abs(flux_ratio)):.3%}")


if __name__ == "__main__":
    main()
