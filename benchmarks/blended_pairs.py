"""Blended point-source pairs measured three ways: joint PRF fit over the BCDs, PRF fit on the mosaic,
apertures on the mosaic (run by hand).

    python benchmarks/blended_pairs.py --band 24 --seeds 1-10 --out /tmp/bp24
    python benchmarks/blended_pairs.py --band 70 --mode scan --seeds 1-6 --out /tmp/bp70

Each seed simulates an observation (``mipssim``, photometry or a small scan map) whose scene is
replaced by slots on a grid ``--spacing-fwhm`` FWHM apart, over the part of the field the planned
frames cover: isolated sources and pairs at 0.5, 1, 1.5 and 2 FWHM (flux ratios 1 and 0.3,
random position angles), at ``--flux`` (primary; default per band for S/N ~ 50).  Sources are
100 K blackbodies (no 160 um leak).  The background is flat (zodi and a uniform cirrus; no blob, no
cirrus structure) unless ``--cirrus``: the question here is blending, not background modelling.
The observation is reprocessed, mosaicked (``reprocess.mosaic.make_mosaic``), and every source is
measured at its true position (forced photometry, the same positions for every method):

* ``joint``: :func:`reprocess.photometry.joint.joint_photometry` over the BCDs; ``joint_refined``
  the same with position refinement (started at the truth).
* ``mosaic_prf``: the toolkit's mosaic PRF fit (:func:`reprocess.photometry.catalog.measure`,
  ``method="prf"``, ``psf="simulator"``, forced at the true positions: the mosaic's own PRF model,
  blends fitted together, the band's default background model).
* ``mosaic_psf``: photutils ``PSFPhotometry`` for comparison with an ``ImagePSF`` built from the same PRF, convolved with the
  mosaic's bilinear-interpolation kernel (a tent one detector pixel wide, in the detector frame,
  which is the mean over sampling phases) and rotated onto the mosaic grid; positions fixed,
  blends grouped within 2.5 FWHM, local background from a 3-4.5 FWHM annulus (median).
* ``mosaic_aper``: photutils apertures of radius 1 FWHM with a 3-4.5 FWHM annulus (sigma-clipped
  median), corrected by the same estimator applied to that ePSF; not measured (NaN) where the
  aperture is not fully covered.

Truth: ``truth.h5``'s sources table (what the simulator put in, Jy at the band: the flux density a
pipeline without colour correction returns).  Two references are printed beside the catalogue:
``cal`` is the product set's FLUXCONV / the simulator's true value (every BCD carries it), and every
method is also run on noise-free copies of the BCDs (``truth.h5``'s sky per DCE, same WCS, mask
and uncertainty) and of their mosaic, so each method's own model error is separated from noise.
The simulator renders a point source with the nominal pixel solid angle and the PRF at the nominal
pixel size (``mipssim/scene.py``); the joint fit uses the local ones from each BCD's SIP, so its
noise-free ratio shows that convention difference (see the report).

Output: ``OUT/results.ecsv`` (one row per source, seed and method) and the summary on stdout:
per configuration, role and method the number of sources, bias (mean of measured / true - 1, with
its standard error), scatter (std of that ratio) and the pull spread (std of (measured - true * cal)
/ error) where the method has errors.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import tomllib
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable, vstack
from astropy.wcs import WCS

from calibration.instrument import band_spec
from calibration.leak import leak_factor
from calibration.psf import load_prf
from mipssim import observe
from mipssim.config import load_config
from mipssim.pointing import plan_photometry
from mipssim.scan import plan_scan
from reprocess.bcd import load_bcd
from reprocess.mosaic import make_mosaic
from reprocess.photometry.joint import FWHM_ARCSEC, joint_photometry
from reprocess.pipeline import reprocess

SEPARATIONS_FWHM = (0.5, 1.0, 1.5, 2.0)
RATIOS = (1.0, 0.3)
TEMPERATURE_K = 100.0
DEFAULT_FLUX_JY = {24: 2.0e-3, 70: 0.5, 160: 1.0}   # S/N ~ 50 (24: photometry, 70: scan)
TRUE_FLUXCONV = {24: 0.0454, 70: 702.0, 160: 44.7}      # the simulator's (calibration.instrument)
_LEAK = {24: 0.0, 70: 0.0}


# ----------------------------------------------------------------------------- scene

def _live(band: int):
    """Live pixel box (x0, x1, y0, y1), inclusive pixel centres, of the array."""
    ny, nx = band_spec(band).shape
    return (0, 15, 0, ny - 1) if band == 70 else (0, nx - 1, 0, ny - 1)


def _coverage(plans, band: int, east, north, cfg) -> np.ndarray:
    """Frames (non-stim) in which each position lies on the live array, 1 FWHM inside its edges
    (only inside along an axis shorter than 4 FWHM: the 160 um array's two rows)."""
    x0, x1, y0, y1 = _live(band)
    margin = FWHM_ARCSEC[band] / band_spec(band).pixel_arcsec
    mx = margin if (x1 - x0) > 4 * margin else 0.0
    my = margin if (y1 - y0) > 4 * margin else 0.0
    ra, dec = _offsets(cfg, east, north)
    count = np.zeros(east.size, int)
    for plan in plans:
        if plan.stim:
            continue
        x, y = plan.wcs.all_world2pix(ra, dec, 0, quiet=True)
        count += ((x >= x0 - 0.5 + mx) & (x <= x1 + 0.5 - mx) & (y >= y0 - 0.5 + my)
                  & (y <= y1 + 0.5 - my))
    return count


def _offsets(cfg, east, north):
    """(ra, dec) deg of offsets (arcsec) from the target."""
    dec0 = np.deg2rad(cfg.dec_deg)
    return cfg.ra_deg + np.asarray(east) / 3600 / np.cos(dec0), cfg.dec_deg + np.asarray(north) / 3600


def _layout(cfg, plans, rng, spacing_fwhm: float, flux_jy: float):
    """Sources: slots on a grid over the covered field, each an isolated source or a pair."""
    band = cfg.band
    fwhm = FWHM_ARCSEC[band]
    step = spacing_fwhm * fwhm
    half = 1200.0
    g = np.arange(-half, half + step, step)
    east, north = (a.ravel() for a in np.meshgrid(g, g))
    cov = _coverage(plans, band, east, north, cfg)
    keep = cov >= max(2, 0.5 * np.median(cov[cov > 0])) if np.any(cov > 0) else cov > 0
    east, north = east[keep], north[keep]
    configs = [(0.0, 0.0)] + [(s, r) for s in SEPARATIONS_FWHM for r in RATIOS]
    kinds = [configs[k % len(configs)] for k in rng.permutation(east.size)]
    rows = []
    for e0, n0, (sep, ratio) in zip(east, north, kinds):
        e0, n0 = e0 + rng.uniform(-0.5, 0.5) * fwhm, n0 + rng.uniform(-0.5, 0.5) * fwhm
        if sep == 0:
            rows.append((e0, n0, flux_jy, 0.0, 0.0, "single"))
            continue
        pa = rng.uniform(0, 2 * np.pi)
        d = 0.5 * sep * fwhm
        de, dn = d * np.sin(pa), d * np.cos(pa)
        rows.append((e0 - de, n0 - dn, flux_jy, sep, ratio, "primary"))
        rows.append((e0 + de, n0 + dn, flux_jy * ratio, sep, ratio, "secondary"))
    e, n, f, sep, ratio, role = (np.array(c) for c in zip(*rows))
    ra, dec = _offsets(cfg, e, n)
    table = QTable()
    table["ra"], table["dec"] = ra * u.deg, dec * u.deg
    table["temperature_k"] = np.full(ra.size, TEMPERATURE_K)
    lam = {24: 23.68, 70: 71.42, 160: 155.9}
    bb = {b: 1.0 / (lam[b] ** 3 * np.expm1(14387.77 / (lam[b] * TEMPERATURE_K))) for b in lam}
    for b in lam:
        table[f"flux_jy_{b}"] = f * bb[b] / bb[band] * u.Jy
    table["leak_jy_160"] = table["flux_jy_160"] * leak_factor(table["temperature_k"])
    meta = QTable({"sep_fwhm": sep, "ratio": ratio, "role": role})
    return table, meta


def _simulate(cfg, folder: Path, sources: QTable) -> None:
    """Simulate ``cfg`` with its scene's sources replaced by ``sources``."""
    original = observe.make_scene

    def make_scene(c, rng):
        scene = original(c, rng)
        scene.sources = sources
        return scene
    with mock.patch.object(observe, "make_scene", make_scene):
        observe.simulate(cfg, folder, overwrite=True)


# ----------------------------------------------------------------------------- noise-free copies

def _truth_bcds(folder: Path, bcd_paths) -> tuple[list, list[Path]]:
    """Noise-free BCDs (truth.h5's sky) as CCDData, and written beside (for the mosaic)."""
    out = folder / "bcd_truth"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    ccds, paths = [], []
    with h5py.File(folder / "truth.h5", "r") as truth:
        for p in bcd_paths:
            stem = p.name[: -len("_bcd.fits")]
            sky = np.array(truth["dce"][stem]["sky_mjysr"], dtype=np.float32)
            with fits.open(p) as hdul:
                header = hdul[0].header
                fits.PrimaryHDU(sky, header=header).writeto(out / p.name)
            for kind in ("bunc", "bmask", "bbmsk"):
                src = p.with_name(f"{stem}_{kind}.fits")
                if src.exists():
                    shutil.copy(src, out / src.name)
            paths.append(out / p.name)
            ccds.append(load_bcd(out / p.name))
    return ccds, paths


# ----------------------------------------------------------------------------- mosaic methods

def _mosaic_epsf(band: int, mosaic_wcs: WCS, bcd_wcs: WCS, oversampling: int = 4):
    """ImagePSF data for the mosaic: PRF (x) tent of one detector pixel, on the mosaic grid."""
    spec = band_spec(band)
    prf = load_prf(band, TEMPERATURE_K, spec.pixel_arcsec)
    mos_scale = np.sqrt(abs(np.linalg.det(mosaic_wcs.pixel_scale_matrix))) * 3600
    radius = int(np.ceil(prf.radius_pix * spec.pixel_arcsec / mos_scale))
    grid = np.arange(-radius * oversampling, radius * oversampling + 1) / oversampling
    mu, mv = np.meshgrid(grid, grid)                       # mosaic x, y offsets (pixels)
    sky = mosaic_wcs.pixel_scale_matrix @ np.vstack([mu.ravel(), mv.ravel()])     # deg
    det = np.linalg.solve(bcd_wcs.pixel_scale_matrix, sky)                       # detector pixels
    dx, dy = det[0], det[1]
    t = (np.arange(12) + 0.5) / 12 * 2 - 1                 # tent quadrature on [-1, 1]
    wt = 1 - np.abs(t)
    wt /= wt.sum()
    acc = np.zeros(dx.size)
    for ty, wy in zip(t, wt):
        for tx, wx in zip(t, wt):
            acc += wy * wx * prf(dy + ty, dx + tx)
    data = (acc * (mos_scale / spec.pixel_arcsec) ** 2).reshape(mu.shape)
    return data, oversampling


def _mosaic_measure(hdul, table: QTable, band: int, bcd_wcs: WCS) -> dict:
    """PSF fit (photutils, positions fixed) and apertures on the mosaic, Jy."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
    from photutils.background import LocalBackground, MedianBackground
    from photutils.psf import ImagePSF, PSFPhotometry, SourceGrouper

    data = np.array(hdul[0].data, float)
    unc = np.array(hdul["UNC"].data, float)
    wcs = WCS(hdul[0].header)
    mask = ~np.isfinite(data) | ~np.isfinite(unc) | (unc <= 0)
    data = np.where(mask, 0.0, data)
    unc = np.where(mask, 1.0, unc)
    pix_sr = abs(np.linalg.det(wcs.pixel_scale_matrix)) * (np.pi / 180) ** 2
    to_jy = pix_sr * 1e6
    x, y = wcs.all_world2pix(table["ra"].to_value(u.deg), table["dec"].to_value(u.deg), 0)
    scale = np.sqrt(pix_sr) * 180 / np.pi * 3600
    fwhm = FWHM_ARCSEC[band] / scale
    epsf, over = _mosaic_epsf(band, wcs, bcd_wcs)
    model = ImagePSF(epsf, oversampling=over)
    model.x_0.fixed = True
    model.y_0.fixed = True
    fit_shape = 2 * int(np.ceil(2 * fwhm)) + 1
    phot = PSFPhotometry(model, fit_shape, grouper=SourceGrouper(min_separation=2.5 * fwhm),
                         local_bkg_estimator=LocalBackground(3 * fwhm, 4.5 * fwhm,
                                                             bkg_estimator=MedianBackground()),
                         group_warning_threshold=1000)
    init = QTable({"x": x, "y": y, "flux": np.full(x.size, 1.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = phot(data, error=unc, mask=mask, init_params=init)
    psf_flux = np.asarray(res["flux_fit"], float) * to_jy
    psf_err = np.asarray(res["flux_err"], float) * to_jy
    # apertures: r = 1 FWHM, annulus 3-4.5 FWHM (sigma-clipped median), corrected on the ePSF
    ap = CircularAperture(np.column_stack([x, y]), r=fwhm)
    ann = CircularAnnulus(np.column_stack([x, y]), 3 * fwhm, 4.5 * fwhm)
    stats = ApertureStats(data, ann, mask=mask)              # sigma-clipped (3 sigma)
    sky = np.asarray(stats.median, float)
    t = aperture_photometry(data, ap, error=unc, mask=mask)
    area = np.asarray(ap.area_overlap(data, mask=mask), float)
    # error: the aperture's pixels, and the annulus median's (sqrt(pi/2) x the mean's)
    sky_err = 1.2533 * np.asarray(stats.std, float) / np.sqrt(np.asarray(stats.sum_aper_area.value, float))
    raw = np.asarray(t["aperture_sum"], float) - sky * area
    err = np.hypot(np.asarray(t["aperture_sum_err"], float), area * sky_err)
    partial = area < 0.99 * ap.area                        # holes in the coverage: not measured
    raw[partial] = np.nan
    err[partial] = np.nan
    frac = _aperture_fraction(epsf, over, fwhm)
    return {"mosaic_psf": (psf_flux, psf_err), "mosaic_aper": (raw * to_jy / frac, err * to_jy / frac)}


def _mosaic_prf(hdul, table: QTable, band: int, folder: Path, bcd_dir: Path):
    """The toolkit's mosaic PRF fit at the true positions, Jy."""
    from reprocess.photometry.catalog import measure, read_mosaic
    path = folder / f"mosaic_{bcd_dir.name}.fits"
    hdul.writeto(path, overwrite=True)
    cat = measure(read_mosaic(path, bcd_dir=bcd_dir), method="prf", psf="simulator",
                  temperature_k=TEMPERATURE_K, positions=table)
    return cat["flux"].to_value(u.Jy), cat["flux_err"].to_value(u.Jy)


def _aperture_fraction(epsf, over, fwhm):
    """The aperture estimator (1 FWHM, 3-4.5 FWHM annulus median) on a unit ePSF source."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
    from photutils.psf import ImagePSF
    n = int(12 * fwhm) | 1
    yy, xx = np.mgrid[0:n, 0:n]
    c = (n - 1) / 2 + 0.3
    img = ImagePSF(epsf, oversampling=over, x_0=c, y_0=c, flux=1.0)(xx, yy)
    ap = CircularAperture((c, c), r=fwhm)
    ann = CircularAnnulus((c, c), 3 * fwhm, 4.5 * fwhm)
    sky = ApertureStats(img, ann).median
    return float(aperture_photometry(img, ap)["aperture_sum"][0] - sky * ap.area)


# ----------------------------------------------------------------------------- one seed

def run_seed(args, seed: int) -> QTable:
    cfg = load_config(band=args.band, seed=seed, mode=args.mode, n_dce=args.n_dce,
                      blob_peak_mjysr=0.0, cirrus_contrast=None if args.cirrus else 0.0,
                      **({"scan_legs": args.scan_legs, "scan_leg_arcmin": args.scan_leg_arcmin}
                         if args.mode == "scan" else {}))
    plans = plan_scan(cfg) if cfg.mode == "scan" else plan_photometry(cfg)
    rng = np.random.default_rng([seed, 2024])
    sources, meta = _layout(cfg, plans, rng, args.spacing_fwhm, args.flux or DEFAULT_FLUX_JY[args.band])
    folder = Path(args.out) / f"seed{seed}"
    t0 = time.monotonic()
    _simulate(cfg, folder, sources)
    reprocess(folder, overwrite=True)
    t1 = time.monotonic()
    with h5py.File(folder / "truth.h5", "r") as truth:
        band = int(tomllib.loads(truth.attrs["config"])["band"])
        src = truth["sources"][()]
    f_true = src[f"flux_jy_{band}"] + (src["leak_jy_160"] if band == 160 else 0.0)
    paths = sorted((folder / "bcd").glob("*_bcd.fits"))
    bcds = [load_bcd(p) for p in paths]
    cal = float(bcds[0].meta["FLUXCONV"]) / TRUE_FLUXCONV[band]
    clean, clean_paths = _truth_bcds(folder, paths)
    pos = (src["ra"], src["dec"])
    rows = []
    for noise, frames, fpaths in (("noisy", bcds, paths), ("noise-free", clean, clean_paths)):
        found = {}
        for name, refine in (("joint", False), ("joint_refined", True)):
            if refine and noise == "noise-free":
                continue            # (started at the truth, noise-free: nothing to refine)
            t = joint_photometry(frames, pos, band=band, temperature_k=src["temperature_k"],
                                 refine_positions=refine)
            found[name] = (t["flux"].to_value(u.Jy), t["flux_err"].to_value(u.Jy))
        mosaic = make_mosaic(fpaths)
        found.update(_mosaic_measure(mosaic, sources, band, bcds[0].wcs.celestial))
        found["mosaic_prf"] = _mosaic_prf(mosaic, sources, band, folder, fpaths[0].parent)
        for method, (flux, err) in found.items():
            rows.append(QTable({"seed": np.full(f_true.size, seed), "id": np.arange(f_true.size),
                                "noise": [noise] * f_true.size, "method": [method] * f_true.size,
                                "sep_fwhm": meta["sep_fwhm"], "ratio": meta["ratio"], "role": meta["role"],
                                "true_jy": f_true, "flux_jy": flux, "err_jy": err,
                                "cal": np.full(f_true.size, cal)}))
    if not args.keep:
        shutil.rmtree(folder)
    print(f"seed {seed}: {f_true.size} sources, {len(paths)} BCDs, simulated+reprocessed in "
          f"{t1 - t0:.0f} s, measured in {time.monotonic() - t1:.0f} s", file=sys.stderr)
    return vstack(rows)


# ----------------------------------------------------------------------------- summary

def summarise(table: QTable) -> str:
    lines = []
    noisy = table[table["noise"] == "noisy"]
    clean = table[table["noise"] == "noise-free"]
    methods = list(dict.fromkeys(table["method"]))
    head = (f"{'config':>13} {'role':>9} {'method':>13} {'n':>4} {'S/N':>5} {'bias %':>14} "
            f"{'scatter %':>9} {'pull sd':>7} {'pull mean':>9} {'noise-free bias %':>17}")
    lines += [head, "-" * len(head)]
    keys = sorted({(float(s), float(r), str(o)) for s, r, o in zip(table["sep_fwhm"], table["ratio"],
                                                                    table["role"])})
    for sep, ratio, role in keys:
        for m in methods:
            sel = ((noisy["sep_fwhm"] == sep) & (noisy["ratio"] == ratio) & (noisy["role"] == role)
                   & (noisy["method"] == m))
            csel = ((clean["sep_fwhm"] == sep) & (clean["ratio"] == ratio) & (clean["role"] == role)
                    & (clean["method"] == m))
            t, c = noisy[sel], clean[csel]
            ok = np.isfinite(t["flux_jy"])
            r = t["flux_jy"][ok] / t["true_jy"][ok]
            if r.size == 0:
                continue
            pull = (t["flux_jy"][ok] - t["true_jy"][ok] * t["cal"][ok]) / t["err_jy"][ok]
            pull = pull[np.isfinite(pull)]
            cr = c["flux_jy"] / c["true_jy"]
            cr = cr[np.isfinite(cr)]
            snr = np.median(t["true_jy"][ok] / t["err_jy"][ok]) if np.isfinite(t["err_jy"][ok]).any() else np.nan
            name = "isolated" if sep == 0 else f"{sep:.1f}F x{ratio:.1f}"
            lines.append(
                f"{name:>13} {role:>9} {m:>13} {r.size:4d} {snr:5.0f} "
                f"{100 * (r.mean() - 1):+7.2f}+-{100 * r.std(ddof=1) / np.sqrt(r.size) if r.size > 1 else np.nan:5.2f} "
                f"{100 * r.std(ddof=1) if r.size > 1 else np.nan:9.2f} "
                f"{pull.std(ddof=1) if pull.size > 1 else np.nan:7.2f} {pull.mean() if pull.size else np.nan:+9.2f} "
                f"{100 * (cr.mean() - 1) if cr.size else np.nan:+17.3f}")
    cal = np.unique(np.round(table["cal"], 5))
    lines.append(f"\ncal (FLUXCONV product / simulator's): {', '.join(f'{c:.5f}' for c in cal)}; pulls are "
                 f"against true x cal; bias and scatter against the catalogue")
    return "\n".join(lines)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--band", type=int, default=24, choices=(24, 70, 160))
    ap.add_argument("--mode", default="photometry", choices=("photometry", "scan"))
    ap.add_argument("--seeds", default="1-3", help="e.g. 1-10 or 1,4,7")
    ap.add_argument("--n-dce", type=int, default=None)
    ap.add_argument("--scan-legs", type=int, default=4)
    ap.add_argument("--scan-leg-arcmin", type=float, default=5.0)
    ap.add_argument("--spacing-fwhm", type=float, default=7.0)
    ap.add_argument("--flux", type=float, default=None, help="primary flux, Jy")
    ap.add_argument("--cirrus", action="store_true", help="keep the default cirrus structure")
    ap.add_argument("--keep", action="store_true", help="keep the simulated folders")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = vstack([run_seed(args, s) for s in _seeds(args.seeds)])
    results.write(out / "results.ecsv", overwrite=True)
    print(f"MIPS {args.band} um {args.mode}, seeds {args.seeds}, spacing {args.spacing_fwhm} FWHM, "
          f"flat background: {not args.cirrus}")
    print(summarise(results))


if __name__ == "__main__":
    main()
