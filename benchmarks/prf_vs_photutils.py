"""PRF fitting on a 24 um mosaic: ``reprocess.photometry.prf_fit`` beside photutils' PSFPhotometry.

Both fit the same image, with the same error map, PRF model, starting positions and grouping
distance:

* ours: :func:`reprocess.photometry.prf_fit.fit_prf` with the mosaic's PRF
  (:func:`reprocess.photometry.mosaic_prf.mosaic_prf`), flux + position per source and a constant
  background per group, all groups in one sparse solve per Gauss-Newton iteration; and again on
  photutils' background-subtracted image without a background term (the same information as
  photutils has);
* photutils 3.0 ``PSFPhotometry`` with an ``ImagePSF`` made of the same model sampled at 1/4
  pixel, ``fit_shape`` the odd square of about our fit disc's area, initial fluxes from an
  aperture of the fit radius, the default TRF fitter, once without a grouper (each source alone:
  its fastest configuration) and once with ``SourceGrouper`` at our linking distance (2 fit radii:
  blends fitted together, as ours); the image it gets has the background (photutils
  ``Background2D``) subtracted, since it fits none.

Timing: each code runs ``--reps`` times, alternating, in one process; the median of each and
their ratio are printed (absolute times on a shared machine are unreliable).  Accuracy against
the truth: median and weighted mean of measured / true flux for true S/N > 20, robust scatter,
and the pulls (measured - true) / error with each code's own error (photutils' ignores the
mosaic's noise correlation).

Images: by default a synthetic 24 um mosaic (1000 x 1000 pixels of 2.45", 1000 sources, 40 MJy/sr
sky, noise correlated as a resampled mosaic's: white noise on a 2.55" grid interpolated
bilinearly); with ``--obs DIR`` the mosaic of a simulated, reprocessed observation
(``DIR/mosaic.fits`` and ``DIR/truth.h5``, e.g. from ``benchmarks/photometry_e2e.py --band 24``),
whose ``--n`` brightest true sources are fitted.  Starting positions: the truth plus 0.1 pixel
Gaussian scatter per axis.

    python benchmarks/prf_vs_photutils.py [--obs /tmp/e2e24] [--n 1000] [--reps 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from astropy.table import QTable
from photutils.psf import ImagePSF, PSFPhotometry, SourceGrouper
from scipy import ndimage

from calibration.photometric import ujy_per_mjysr
from reprocess.photometry.detect import background_map
from reprocess.photometry.mosaic_prf import mosaic_prf
from reprocess.photometry.prf_fit import fit_prf


def synthetic(n: int, seed: int):
    """A 24 um mosaic-like image: sources, flat sky, resampled (correlated) noise."""
    rng = np.random.default_rng(seed)
    prf = mosaic_prf(24, pixel_arcsec=2.45)
    shape = (1000, 1000)
    x = rng.uniform(10, shape[1] - 10, n)
    y = rng.uniform(10, shape[0] - 10, n)
    flux_ujy = np.exp(rng.uniform(np.log(300.0), np.log(30000.0), n))
    amp = flux_ujy / ujy_per_mjysr(2.45)
    sigma = 0.07                                   # MJy/sr per mosaic pixel
    ratio = 2.55 / 2.45
    native = rng.normal(size=(int(shape[0] / ratio) + 3, int(shape[1] / ratio) + 3))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / ratio + rng.uniform(0, 1, 2)[:, None, None]
    noise = ndimage.map_coordinates(native, [yy, xx], order=1)
    noise *= sigma / noise.std()
    image = 40.0 + prf.render(shape, y, x, amp) + noise
    return image, np.full(shape, sigma), x, y, flux_ujy, prf, np.ones(shape, dtype=bool), 2.45


def from_observation(obs: Path, n: int):
    """The mosaic of a simulated observation and its ``n`` brightest true sources on it."""
    import h5py

    from reprocess.photometry.catalog import read_mosaic
    mos = read_mosaic(obs / "mosaic.fits")
    with h5py.File(obs / "truth.h5", "r") as fh:
        src = fh["sources"][()]
    x, y = mos.wcs.world_to_pixel_values(src["ra"], src["dec"])
    flux = np.asarray(src[f"flux_jy_{mos.band}"], dtype=float) * 1e6
    ny, nx = mos.data.shape
    ok = (x > 8) & (y > 8) & (x < nx - 9) & (y < ny - 9)
    ok[ok] &= mos.coverage[np.rint(y[ok]).astype(int), np.rint(x[ok]).astype(int)] > 2
    keep = np.nonzero(ok)[0][np.argsort(-flux[ok])[:n]]
    prf = mosaic_prf(mos.band, pixel_arcsec=mos.pixel_arcsec, bcd_to_mosaic=mos.bcd_to_mosaic,
                     temperature_k=3000.0)
    valid = np.isfinite(mos.data) & np.isfinite(mos.uncertainty) & (mos.coverage > 0)
    return mos.data, mos.uncertainty, x[keep], y[keep], flux[keep], prf, valid, mos.pixel_arcsec


def run_ours(image, unc, x0, y0, prf, valid, *, background_order=0):
    return fit_prf(image, unc, x0, y0, prf=prf, mask=~valid, background_order=background_order)


def photutils_setup(image, unc, prf, valid, r_fit, *, grouped: bool):
    over = 4
    r = int(np.ceil(prf.radius_pix))
    g = np.arange(-r * over, r * over + 1) / over
    model = ImagePSF(prf(*np.meshgrid(g, g, indexing="ij")), oversampling=over)
    # the odd square of (about) our fit disc's area; grouped: our linking distance
    box = 2 * int(np.sqrt(np.pi) * r_fit // 2) + 1
    phot = PSFPhotometry(model, (box, box), aperture_radius=r_fit,
                         grouper=SourceGrouper(2 * r_fit) if grouped else None)
    bkg = background_map(image, valid, box_pix=64)       # photutils Background2D inside
    data = np.where(valid, image - bkg, 0.0)
    err = np.where(valid, unc, 1.0)
    return phot, data, err


def run_photutils(phot, data, err, valid, x0, y0):
    init = QTable()
    init["x"], init["y"] = x0, y0
    return phot(data, error=err, mask=~valid, init_params=init)


def accuracy(flux, err, truth, snr_true) -> str:
    s = np.isfinite(flux) & (snr_true > 20)
    ratio = flux[s] / truth[s]
    w = (truth[s] / err[s]) ** 2
    pull = (flux[s] - truth[s]) / err[s]
    mad = 1.4826 * np.median(np.abs(ratio - np.median(ratio)))
    return (f"n={s.sum()}  median ratio {np.median(ratio):.4f}  weighted mean "
            f"{np.sum(w * ratio) / np.sum(w):.4f}  robust scatter {mad:.4f}  pulls std "
            f"{np.std(pull):.3f} (robust {1.4826 * np.median(np.abs(pull - np.median(pull))):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obs", type=Path, help="simulated observation with mosaic.fits + truth.h5")
    ap.add_argument("--n", type=int, default=1000, help="sources (default 1000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-grouped", action="store_true",
                    help="leave out photutils with a SourceGrouper (slow in crowded fields)")
    args = ap.parse_args()
    image, unc, x, y, truth, prf, valid, pix = (from_observation(args.obs, args.n) if args.obs
                                                else synthetic(args.n, args.seed))
    rng = np.random.default_rng(args.seed + 1)
    x0 = x + rng.normal(0, 0.1, len(x))
    y0 = y + rng.normal(0, 0.1, len(y))
    r_fit = 1.5 * prf.fwhm_pix
    scale = ujy_per_mjysr(pix)
    configs = {"photutils, no grouper": False, "photutils, grouped": True}
    if args.skip_grouped:
        configs.pop("photutils, grouped")
    setups = {name: photutils_setup(image, unc, prf, valid, r_fit, grouped=g)
              for name, g in configs.items()}
    times = {"ours": [], "ours, bkg subtracted": []} | {name: [] for name in configs}
    results = {}
    bkg_sub = setups[next(iter(setups))][1]
    for _ in range(args.reps):
        t0 = time.perf_counter()
        results["ours"] = run_ours(image, unc, x0, y0, prf, valid)
        times["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        results["ours, bkg subtracted"] = run_ours(bkg_sub, unc, x0, y0, prf, valid,
                                                   background_order=None)
        times["ours, bkg subtracted"].append(time.perf_counter() - t0)
        for name, (phot, data, err) in setups.items():
            t0 = time.perf_counter()
            results[name] = run_photutils(phot, data, err, valid, x0, y0)
            times[name].append(time.perf_counter() - t0)
    print(f"{len(x)} sources, {image.shape[1]} x {image.shape[0]} pixels, "
          f"{'observation ' + str(args.obs) if args.obs else 'synthetic 24 um mosaic'}; fit radius "
          f"{r_fit:.2f} px (photutils fit_shape {setups[next(iter(setups))][0].fit_shape})")
    med = {name: float(np.median(t)) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:<22}: {med[name]:7.3f} s median of {args.reps} ({len(x) / med[name]:5.0f} "
              f"sources/s); runs " + ", ".join(f"{v:.3f}" for v in t)
              + ("" if name == "ours" else f";  photutils / ours {med[name] / med['ours']:.2f}x"))
    ours = results["ours"]
    snr_true = truth / (np.asarray(ours["flux_err"]) * scale)
    for name, res in results.items():
        print(f"{name:<22}: " + accuracy(np.asarray(res["flux_fit"]) * scale,
                                         np.asarray(res["flux_err"]) * scale, truth, snr_true))
    for name in configs:
        print(f"{name}: flags != 0 for {int(np.count_nonzero(np.asarray(results[name]['flags'])))}")
    print(f"ours: flags beyond BLENDED for {int(np.count_nonzero(np.asarray(ours['flags']) & ~16))}")


if __name__ == "__main__":
    main()
