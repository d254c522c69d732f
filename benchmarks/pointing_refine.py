"""Pointing refinement at 24 um: header pointing errors put in, refined, scored against truth.

A 24 um photometry-mode observation (or a small scan map) is simulated with the header pointing error on
(``include_pointing_error``: each DCE's header WCS = the true one + a Gaussian offset of
``--error`` arcsec RMS per axis, and ``--common`` shared by the AOR), reprocessed, and mosaicked
three ways: with the header WCSs, after relative refinement, and after absolute refinement
against a catalogue made from the truth (sources brighter than ``--cat-min-mjy``, each position
perturbed by ``--cat-noise`` arcsec per axis, like a 2MASS list).  The same observation without
the error (same seed: the same sky, noise and true pointings) gives the floor.

Printed:

* per BCD: the WCS minus the true WCS (``truth.h5``: ``true_crval_deg``, ``header_rotation_deg``)
  at the array centre, radial RMS and 95th percentile over the BCDs, before and after;
* per BCD: sources detected on each BCD (S/N > ``--min-snr``, isolated) placed on the sky
  through its WCS (header, refined), minus the truth: radial RMS, 95th percentile, number;
* on each mosaic: positions of the PRF fit (``reprocess.photometry.measure``) of true sources
  with S/N > ``--min-snr``, matched within 3" to the truth, minus the truth: radial RMS, 95th
  percentile, mean offset (east, north) and the number of sources.

Usage::

    python benchmarks/pointing_refine.py --out /tmp/ptg24 [--n-dce 40] [--error 0.5] [--common 0]
    python benchmarks/pointing_refine.py --out /tmp/ptg24s --mode scan --legs 2 --leg-arcmin 10 \\
        --n-sources 400
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.bcd import load_bcd
from reprocess.mosaic import make_mosaic, write_mosaic
from reprocess.mosaic.grid import inspect_bcd
from reprocess.mosaic.pointing import _tangent, bcd_sources, wcs_change
from reprocess.photometry.catalog import measure
from reprocess.pipeline import reprocess


def build(out: Path, args, *, error: bool) -> Path:
    obs = out / ("obs_error" if error else "obs_true")
    if not (obs / "truth.h5").exists():
        scan = {"mode": "scan", "scan_legs": args.legs, "scan_leg_arcmin": args.leg_arcmin,
                "scan_overscan_arcmin": 0.0} if args.mode == "scan" else {}
        simulate(load_config(band=24, n_dce=args.n_dce, seed=args.seed, n_sources=args.n_sources,
                             flux_min_jy=args.flux_min, flux_max_jy=args.flux_max,
                             source_temperature_k=3000.0, include_pointing_error=error,
                             pointing_error_arcsec=args.error,
                             pointing_error_common_arcsec=args.common, **scan), obs)
    if not (obs / "bcd").is_dir():
        reprocess(obs)
    return obs


def truth_sources(obs: Path) -> Table:
    with h5py.File(obs / "truth.h5", "r") as fh:
        src = fh["sources"][()]
    return Table({"ra": np.asarray(src["ra"], float), "dec": np.asarray(src["dec"], float),
                  "flux_mjy": 1e3 * np.asarray(src["flux_jy_24"], float)})


def true_wcs(info, attrs):
    """The DCE's true WCS: the header's with the true CRVAL and the header's rotation undone."""
    w = info.wcs.deepcopy()
    w.wcs.crval = attrs["true_crval_deg"]
    a = -np.deg2rad(float(attrs["header_rotation_deg"]))
    w.wcs.cd = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ w.wcs.cd
    w.wcs.set()
    return w


def stats(radial: np.ndarray) -> str:
    if len(radial) == 0:
        return "n=0"
    return (f"RMS {np.sqrt(np.mean(radial ** 2)):.3f}\"  P95 {np.percentile(radial, 95):.3f}\"  "
            f"max {radial.max():.3f}\"  n={len(radial)}")


def bcd_errors(obs: Path, wcs_of) -> np.ndarray:
    infos = [inspect_bcd(p) for p in sorted((obs / "bcd").glob("*_bcd.fits"))]
    out = []
    with h5py.File(obs / "truth.h5", "r") as fh:
        for info in infos:
            attrs = fh["dce"][info.path.name[:-len("_bcd.fits")]].attrs
            e, n, _ = wcs_change(true_wcs(info, attrs), wcs_of(info), info.shape)
            out.append((e, n))
    return np.array(out)


def bcd_source_offsets(obs: Path, truth: Table, wcs_of, min_snr: float) -> np.ndarray:
    """Sources detected on each BCD (S/N > min_snr, isolated true source within 3"), placed on the
    sky through ``wcs_of(info)``, minus the truth: (east, north) arcsec, all BCDs together."""
    ra0, dec0 = float(np.mean(truth["ra"])), float(np.mean(truth["dec"]))
    tx, ty = _tangent(ra0, dec0, truth["ra"], truth["dec"])
    tree = cKDTree(np.column_stack([tx, ty]))
    isolated = np.array([len(n) == 1 for n in tree.query_ball_point(np.column_stack([tx, ty]), 12.0)])
    out = []
    for path in sorted((obs / "bcd").glob("*_bcd.fits")):
        info = inspect_bcd(path)
        cat = bcd_sources(load_bcd(path, wcs=info.wcs), band=24)
        cat = cat[cat["snr"] > min_snr]
        ra, dec = wcs_of(info).all_pix2world(np.asarray(cat["x"]), np.asarray(cat["y"]), 0)
        x, y = _tangent(ra0, dec0, ra, dec)
        d, j = tree.query(np.column_stack([x, y]))
        ok = (d < 3.0) & isolated[j]
        out.append(np.column_stack([x[ok] - tx[j[ok]], y[ok] - ty[j[ok]]]))
    return np.concatenate(out)


def mosaic_positions(path: Path, truth: Table, min_snr: float) -> np.ndarray:
    cat = measure(str(path), method="prf")
    ra0, dec0 = float(np.mean(truth["ra"])), float(np.mean(truth["dec"]))
    tx, ty = _tangent(ra0, dec0, truth["ra"], truth["dec"])
    mx, my = _tangent(ra0, dec0, np.asarray(cat["ra"].to_value("deg")), np.asarray(cat["dec"].to_value("deg")))
    snr = np.asarray(cat["flux"].value / cat["flux_err"].value)
    d, j = cKDTree(np.column_stack([tx, ty])).query(np.column_stack([mx, my]))
    # isolated truth only: no other true source within 12" (2 FWHM), so blends do not count
    near = cKDTree(np.column_stack([tx, ty])).query_ball_point(np.column_stack([tx, ty]), 12.0)
    isolated = np.array([len(n) == 1 for n in near])
    ok = (d < 3.0) & (snr > min_snr) & isolated[j]
    return np.column_stack([mx[ok] - tx[j[ok]], my[ok] - ty[j[ok]]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=("photometry", "scan"), default="photometry")
    p.add_argument("--legs", type=int, default=2, help="scan legs (--mode scan)")
    p.add_argument("--leg-arcmin", type=float, default=10.0, help="scan leg length (--mode scan)")
    p.add_argument("--n-dce", type=int, default=40, help="DCEs (photometry)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--n-sources", type=int, default=120)
    p.add_argument("--flux-min", type=float, default=0.001, help="Jy")
    p.add_argument("--flux-max", type=float, default=0.05, help="Jy")
    p.add_argument("--error", type=float, default=0.5, help="per-DCE header error, arcsec RMS per axis")
    p.add_argument("--common", type=float, default=0.0, help="common header error, arcsec RMS per axis")
    p.add_argument("--fitgeom", default="shift", choices=("shift", "rshift"))
    p.add_argument("--cat-min-mjy", type=float, default=3.0)
    p.add_argument("--cat-noise", type=float, default=0.1, help="catalogue position error, arcsec/axis")
    p.add_argument("--min-snr", type=float, default=20.0)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    obs_true, obs = build(out, args, error=False), build(out, args, error=True)
    truth = truth_sources(obs)
    rng = np.random.default_rng(args.seed)
    bright = truth[truth["flux_mjy"] > args.cat_min_mjy]
    cat = Table({"RA": bright["ra"] + rng.normal(0, args.cat_noise, len(bright)) / 3600.0
                 / np.cos(np.radians(bright["dec"])),
                 "DEC": bright["dec"] + rng.normal(0, args.cat_noise, len(bright)) / 3600.0})
    bcds = sorted((obs / "bcd").glob("*_bcd.fits"))
    timings, mosaics = {}, {}
    for name, kw in (("header", {}), ("relative", {"refine_pointing": True}),
                     ("absolute", {"refine_pointing": True, "catalog": cat})):
        path = out / f"mosaic_{name}.fits"
        t0 = time.perf_counter()
        hdul = make_mosaic(bcds, pointing_fitgeom=args.fitgeom, **kw)
        timings[name] = time.perf_counter() - t0
        write_mosaic(hdul, path, overwrite=True)
        mosaics[name] = (path, hdul)
    path_true = out / "mosaic_no_error.fits"
    write_mosaic(make_mosaic(sorted((obs_true / "bcd").glob("*_bcd.fits"))), path_true, overwrite=True)

    print(f"24 um {args.mode}, {len(bcds)} BCDs, header error {args.error}\" per DCE + {args.common}\" "
          f"common (RMS per axis), fit {args.fitgeom}; catalogue: {len(cat)} sources > "
          f"{args.cat_min_mjy} mJy with {args.cat_noise}\" noise")
    print("mosaic time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
          + f"  (refinement ratio relative/header {timings['relative'] / timings['header']:.2f})")
    wcs_of = {}
    for name, (_, hdul) in mosaics.items():
        if name == "header":
            wcs_of[name] = lambda info: info.wcs
            continue
        fixed = {row["bcd"]: row for row in hdul["POINTING"].data}

        def refined(info, fixed=fixed):
            w = info.wcs.deepcopy()
            row = fixed[info.path.name]
            w.wcs.crval = [row["CRVAL1"], row["CRVAL2"]]
            w.wcs.cd = [[row["CD1_1"], row["CD1_2"]], [row["CD2_1"], row["CD2_2"]]]
            w.wcs.set()
            return w
        wcs_of[name] = refined
        status = list(hdul["POINTING"].data["status"])
        print(f"{name}: BCD status " + ", ".join(f"{s} {status.count(s)}" for s in sorted(set(status))))
    print("\nper-BCD WCS minus true WCS at the array centre (radial):")
    for name, fn in wcs_of.items():
        err = bcd_errors(obs, fn)
        mean = err.mean(axis=0)
        rel = np.hypot(*(err - mean).T)
        print(f"  {name:9s} {stats(np.hypot(*err.T))}  mean ({mean[0]:+.3f}, {mean[1]:+.3f})\"  "
              f"about the mean: RMS {np.sqrt(np.mean(rel ** 2)):.3f}\"")
    print(f"\nper-BCD source positions minus truth (isolated, S/N > {args.min_snr}, radial):")
    for name, fn in [("no error", None)] + list(wcs_of.items()):
        d = bcd_source_offsets(obs_true, truth, lambda i: i.wcs, args.min_snr) if fn is None \
            else bcd_source_offsets(obs, truth, fn, args.min_snr)
        mean = d.mean(axis=0)
        print(f"  {name:9s} {stats(np.hypot(*d.T))}  mean ({mean[0]:+.3f}, {mean[1]:+.3f})\"")
    print(f"\nmosaic source positions minus truth (isolated, S/N > {args.min_snr}, radial):")
    for name, path in [("no error", path_true)] + [(k, v[0]) for k, v in mosaics.items()]:
        d = mosaic_positions(path, truth, args.min_snr)
        mean = d.mean(axis=0) if len(d) else np.zeros(2)
        print(f"  {name:9s} {stats(np.hypot(*d.T))}  mean ({mean[0]:+.3f}, {mean[1]:+.3f})\"")


if __name__ == "__main__":
    main()
