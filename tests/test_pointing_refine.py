"""Pointing refinement (reprocess/mosaic/pointing.py) on synthetic 24 um BCDs with known header
errors, and the simulator's header pointing error (mipssim/pointing.py)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from calibration.geometry import array_wcs
from reprocess.io import InputError
from reprocess.mosaic import make_mosaic
from reprocess.mosaic.grid import inspect_bcd
from reprocess.mosaic.pointing import read_catalog, refine_pointing, wcs_change

RA0, DEC0, PA = 53.1, -27.8, 30.0
NOISE = 1.0          # MJy/sr per pixel
SIGMA_PIX = 1.0      # Gaussian PSF sigma, pixels (FWHM 2.35 px = 6")


def _sources(rng, n=60):
    r = 120.0 * np.sqrt(rng.uniform(0, 1, n))          # arcsec, inside the 5.4' array
    t = rng.uniform(0, 2 * np.pi, n)
    c = SkyCoord(RA0 * u.deg, DEC0 * u.deg).spherical_offsets_by(r * np.sin(t) * u.arcsec,
                                                                 r * np.cos(t) * u.arcsec)
    flux = np.exp(rng.uniform(np.log(60.0), np.log(600.0), n))   # peak S/N 10-100
    return c.ra.deg, c.dec.deg, flux


def _write_bcds(folder, rng, errors, *, dithers):
    """One BCD per header error (east, north arcsec): sources rendered through the true WCS,
    the header WCS moved by the error.  Returns the paths and the true WCSs."""
    ra, dec, flux = _sources(np.random.default_rng(1))
    yy, xx = np.mgrid[0:128, 0:128]
    paths, truths = [], []
    for k, ((de, dn), dither) in enumerate(zip(errors, dithers)):
        centre = SkyCoord(RA0 * u.deg, DEC0 * u.deg).spherical_offsets_by(
            dither[0] * u.arcsec, dither[1] * u.arcsec)
        true = WCS(array_wcs(24, (centre.ra.deg, centre.dec.deg), PA))
        header_c = centre.spherical_offsets_by(de * u.arcsec, dn * u.arcsec)
        hdr = array_wcs(24, (header_c.ra.deg, header_c.dec.deg), PA)
        x, y = true.all_world2pix(ra, dec, 0)
        img = rng.normal(0.0, NOISE, (128, 128))
        for xs, ys, f in zip(x, y, flux):
            img += f / (2 * np.pi * SIGMA_PIX ** 2) * np.exp(
                -((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * SIGMA_PIX ** 2))
        hdr["CHNLNUM"] = 1
        hdr["BUNIT"] = "MJy/sr"
        stem = folder / f"SPITZER_M1_1_0000_{k:04d}_0"
        fits.PrimaryHDU(img.astype(np.float32), header=hdr).writeto(f"{stem}_bcd.fits")
        fits.PrimaryHDU(np.full((128, 128), NOISE, np.float32), header=hdr).writeto(f"{stem}_bunc.fits")
        fits.PrimaryHDU(np.zeros((128, 128), np.int16)).writeto(f"{stem}_bbmsk.fits")
        paths.append(folder.joinpath(f"{stem.name}_bcd.fits"))
        truths.append(true)
    return paths, truths, Table({"RA": ra, "DEC": dec})


def _residuals(paths, truths, solution):
    out = []
    for p, t in zip(paths, truths):
        info = inspect_bcd(p)
        e, n, _ = wcs_change(t, solution.wcs[info.path], info.shape)
        out.append((e, n))
    return np.array(out)


def _tolerance(solution) -> np.ndarray:
    """Per BCD: 5 x the fit's centroid scatter over sqrt(matches) (the shift's noise), arcsec."""
    t = solution.table
    assert np.all(t["n_matched"] >= 20), "too few matches for the test to mean anything"
    return 5.0 * np.asarray(t["rms_arcsec"]) / np.sqrt(np.asarray(t["n_matched"], float))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptg")
    rng = np.random.default_rng(7)
    errors = rng.normal(0.0, 0.7, (8, 2)) + np.array([0.8, -0.6])   # per-DCE + a common part
    dithers = rng.uniform(-8.0, 8.0, (8, 2))
    paths, truths, cat = _write_bcds(folder, rng, errors, dithers=dithers)
    return paths, truths, cat, errors


def test_relative_refinement_recovers_injected_shifts(stack):
    paths, truths, _, errors = stack
    infos = [inspect_bcd(p) for p in paths]
    sol = refine_pointing(infos, band=24)
    assert sol.mode == "relative" and set(sol.table["status"]) == {"relative"}
    res = _residuals(paths, truths, sol)
    # relative refinement cannot see the mean error: what stays is the mean header error
    assert np.allclose(res.mean(axis=0), errors.mean(axis=0), atol=0.05)
    about_mean = np.hypot(*(res - res.mean(axis=0)).T)
    before = np.hypot(*(errors - errors.mean(axis=0)).T)
    tol = _tolerance(sol)
    assert np.all(tol < 0.1) and np.median(before) > 5 * tol.max()   # the test can fail
    assert np.all(about_mean < tol), (about_mean, tol)


def test_absolute_refinement_against_catalogue(stack):
    paths, truths, cat, errors = stack
    infos = [inspect_bcd(p) for p in paths]
    sol = refine_pointing(infos, band=24, catalog=cat)
    assert sol.mode == "absolute" and sol.meta["absolute_status"] == "SUCCESS"
    res = np.hypot(*_residuals(paths, truths, sol).T)
    assert np.hypot(*errors.mean(axis=0)) > 0.5          # a common error the relative step keeps
    assert np.all(res < _tolerance(sol) + 0.05), res     # + the absolute fit's own error


def test_mosaic_with_refinement_keeps_inputs(stack, tmp_path):
    paths = stack[0]
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    hdul = make_mosaic(paths, refine_pointing=True, reject_sigma=None)
    assert hdul[0].header["PTGREF"] == "relative"
    ptg = hdul["POINTING"].data
    assert len(ptg) == len(paths) and np.all(np.isfinite(ptg["d_east_arcsec"]))
    assert digest == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    plain = make_mosaic(paths, reject_sigma=None)
    assert plain[0].header["PTGREF"] == "none" and "POINTING" not in plain
    # refined: sharper sources, so a higher peak on the mosaic
    assert np.nanmax(hdul[0].data) > np.nanmax(plain[0].data)
    # the same solution handed in (wcs_override) gives the same mosaic, bit for bit
    sol = refine_pointing([inspect_bcd(p) for p in paths], band=24)
    again = make_mosaic(paths, reject_sigma=None, wcs_override=sol.wcs)
    assert np.array_equal(again[0].data, hdul[0].data, equal_nan=True)


def test_catalogue_errors_name_the_file(tmp_path):
    bad = tmp_path / "cat.ecsv"
    Table({"x": [1.0], "y": [2.0]}).write(bad)
    with pytest.raises(InputError, match="cat.ecsv.*no RA/Dec"):
        read_catalog(bad)
    good = tmp_path / "good.ecsv"
    Table({"ra": [53.1] * u.deg, "Dec": [-1666.0] * u.arcmin}).write(good)
    cat = read_catalog(good)
    assert np.isclose(cat["DEC"][0], -1666.0 / 60)


def test_simulated_header_carries_the_recorded_error(tmp_path):
    from mipssim.config import load_config
    from mipssim.pointing import plan_photometry
    cfg = load_config(band=24, n_dce=6, seed=2, include_pointing_error=True,
                      pointing_error_arcsec=0.5, pointing_error_rotation_deg=0.1)
    off = load_config(band=24, n_dce=6, seed=2)
    for p, q in zip(plan_photometry(cfg), plan_photometry(off)):
        assert p.crval == q.crval and q.header_error_arcsec == (0.0, 0.0)   # truth unchanged
        header, true = WCS(p.wcs_header), p.wcs
        e, n, rot = wcs_change(true, header, (128, 128))
        # the array centre is not the reference pixel: the rotation moves it a little
        assert np.hypot(e - p.header_error_arcsec[0], n - p.header_error_arcsec[1]) < 0.02
        assert rot == pytest.approx(p.header_rotation_deg, abs=1e-4)
        assert p.header_error_arcsec != (0.0, 0.0)


def test_simulated_24um_errors_refined(tmp_path):
    """End to end: 0.5" header errors put in by the simulator, reprocessed, refined (relative):
    each BCD's WCS about the stack's mean within the fit's own noise of the truth."""
    import h5py

    from mipssim.config import load_config
    from mipssim.observe import simulate
    from reprocess.pipeline import reprocess
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=10, seed=5, include_pointing_error=True,
                         pointing_error_arcsec=0.5, n_sources=60, flux_min_jy=0.002,
                         flux_max_jy=0.1), obs)
    reprocess(obs)
    infos = [inspect_bcd(p) for p in sorted((obs / "bcd").glob("*_bcd.fits"))]
    sol = refine_pointing(infos, band=24)
    before, after = [], []
    with h5py.File(obs / "truth.h5", "r") as fh:
        for info in infos:
            attrs = fh["dce"][info.path.name[:-len("_bcd.fits")]].attrs
            true = info.wcs.deepcopy()
            true.wcs.crval = attrs["true_crval_deg"]
            true.wcs.set()
            before.append(wcs_change(true, info.wcs, info.shape)[:2])
            after.append(wcs_change(true, sol.wcs[info.path], info.shape)[:2])
    before, after = np.array(before), np.array(after)
    # the mean error stays (relative refinement); within the scatter of the header errors' mean
    assert np.allclose(after.mean(axis=0), before.mean(axis=0), atol=3 * 0.5 / np.sqrt(len(infos)))
    tol = _tolerance(sol)
    about_mean = np.hypot(*(after - after.mean(axis=0)).T)
    assert np.median(np.hypot(*(before - before.mean(axis=0)).T)) > 5 * tol.max()
    assert np.all(about_mean < tol), (about_mean, tol)


def test_cli_refine_pointing(stack, tmp_path, capsys):
    from mips.cli import main
    paths, _, cat, _ = stack
    folder = paths[0].parent
    ref = tmp_path / "ref.ecsv"
    Table({"ra": cat["RA"] * u.deg, "dec": cat["DEC"] * u.deg}).write(ref)
    assert main(["mosaic", str(folder), "--out", str(tmp_path / "c.fits"), "--catalog", str(ref)]) == 2
    assert "--refine-pointing" in capsys.readouterr().err
    out = tmp_path / "a.fits"
    assert main(["mosaic", str(folder), "--out", str(out), "--refine-pointing", "--catalog", str(ref),
                 "--pointing-fit", "rshift", "--no-reject"]) == 0
    assert "pointing refinement (absolute)" in capsys.readouterr().out
    with fits.open(out) as hdul:
        assert hdul[0].header["PTGREF"] == "absolute"
        assert hdul["POINTING"].header["PTGGEOM"] == "rshift"
        assert set(hdul["POINTING"].data["status"]) == {"absolute"}
