"""Point-source photometry on mosaics (reprocess.photometry): exact fits, pulls, apertures, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS
from photutils.aperture import (
    ApertureStats,
    CircularAnnulus,
    CircularAperture,
    aperture_photometry,
)
from scipy import ndimage, signal

from calibration.instrument import band_spec
from calibration.photometric import ujy_per_mjysr
from calibration.psf import load_prf
from mips.cli import main
from reprocess.io import InputError
from reprocess.photometry.aperture import aperture_photometry_uJy, measure_apertures
from reprocess.photometry.catalog import measure, read_mosaic, write_catalog
from reprocess.photometry.detect import detect_sources
from reprocess.photometry.flags import PhotFlag
from reprocess.photometry.mosaic_prf import mosaic_prf
from reprocess.photometry.prf_fit import fit_prf

PIX = {24: 2.45, 70: 4.0, 160: 8.0}


def _field(rng, n, shape, margin=12):
    y = rng.uniform(margin, shape[0] - margin, n)
    x = rng.uniform(margin, shape[1] - margin, n)
    return y, x


# ----------------------------------------------------------------------------- exact answers

@pytest.mark.parametrize("band", [24, 70, 160])
def test_prf_fit_recovers_noiseless_image_exactly(band):
    """A mosaic-PRF-rendered image (with blends) is fitted back to 1e-6 in flux and position."""
    prf = mosaic_prf(band, pixel_arcsec=PIX[band])
    rng = np.random.default_rng(band)
    shape = (260, 260)
    y, x = _field(rng, 40, shape, margin=20)
    # a pair at 0.5, 1 and 2 FWHM (off the PRF table's nodes: on a node line the bilinear
    # interpolant has a kink that Gauss-Newton may stop short of, by ~1e-5 pixel)
    for k, sep in enumerate((0.5, 1.0, 2.0)):
        y = np.r_[y, 60.37 + 60 * k, 60.37 + 60 * k]
        x = np.r_[x, 200.23, 200.23 + sep * prf.fwhm_pix]
    flux = np.exp(rng.uniform(np.log(10), np.log(1000), len(x)))
    image = prf.render(shape, y, x, flux) + 5.0
    res = fit_prf(image, np.full(shape, 0.05), x + rng.normal(0, 0.1, len(x)),
                  y + rng.normal(0, 0.1, len(y)), prf=prf, tol_pix=1e-10, tol_sigma=0.0,
                  max_iter=50, max_shift_pix=1.0)
    np.testing.assert_allclose(res["flux_fit"], flux, rtol=1e-6)
    np.testing.assert_allclose(res["x_fit"], x, atol=1e-6)
    np.testing.assert_allclose(res["y_fit"], y, atol=1e-6)
    np.testing.assert_allclose(res["background"], 5.0, atol=1e-6)
    assert np.all(res["group_size"][-6:] >= 2)


def test_prf_fit_exact_with_the_calibration_prf():
    """Any PRF callable works (derivatives by central differences): calibration.psf's PRF."""
    prf = load_prf(70, 3000.0, 9.98)          # a BCD's PRF, fitted on a BCD-like image
    shape = (32, 32)
    y, x = np.array([10.3, 21.6]), np.array([11.2, 19.7])
    flux = np.array([400.0, 150.0])
    yy, xx = np.mgrid[0:32, 0:32]
    image = sum(f * prf(yy - yk, xx - xk) for f, yk, xk in zip(flux, y, x)) + 2.0
    res = fit_prf(image, np.full(shape, 0.1), x + 0.2, y - 0.2, prf=prf, fit_radius_pix=4.0,
                  model_radius_pix=40.0, tol_pix=1e-10, tol_sigma=0.0, max_iter=50)
    np.testing.assert_allclose(res["flux_fit"], flux, rtol=1e-6)
    np.testing.assert_allclose(np.c_[res["x_fit"], res["y_fit"]], np.c_[x, y], atol=1e-6)


def test_mosaic_prf_is_the_phase_average_of_a_weighted_bilinear_coadd():
    """The model equals an explicit coadd: a native-pixel PRF image at random sub-pixel phases,
    interpolated bilinearly at the mosaic's pixel centres and weighted by 1/sum(w^2) as the coadd
    weights each input (its interpolation variance)."""
    band, pix = 24, 2.45
    native = band_spec(band).pixel_arcsec
    nat = load_prf(band, 3000.0, native)
    model = mosaic_prf(band, pixel_arcsec=pix)
    rng = np.random.default_rng(5)
    ratio = pix / native
    off = np.arange(-6, 7)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    num = np.zeros(oy.shape)
    den = np.zeros(oy.shape)
    gy, gx = np.mgrid[-12:13, -12:13]
    for _ in range(4000):
        sy, sx = rng.uniform(0, 1, 2)               # the source's phase in the native grid
        img = nat(gy - sy, gx - sx)
        ty, tx = oy * ratio + sy + 12, ox * ratio + sx + 12    # mosaic pixels in native coords
        val = ndimage.map_coordinates(img, [ty, tx], order=1)
        fy, fx = ty % 1, tx % 1
        w = 1.0 / ((fy ** 2 + (1 - fy) ** 2) * (fx ** 2 + (1 - fx) ** 2))
        num += w * val
        den += w
    expected = num / den * ratio ** 2              # fraction per mosaic pixel
    got = model(oy.astype(float), ox.astype(float))
    assert np.max(np.abs(got - expected)) < 0.01 * got.max()
    plain = mosaic_prf(band, pixel_arcsec=pix, resampling="none")(oy.astype(float), ox.astype(float))
    assert np.max(np.abs(plain - expected)) > 0.05 * got.max()   # the resampling is not negligible


# ----------------------------------------------------------------------------- noise

def _pulls(prf, sigma, noise, rng, n_images=4, correlation=None):
    pulls, pulls_indep = [], []
    shape = (300, 300)
    for _ in range(n_images):
        gy, gx = np.mgrid[25:280:30, 25:280:30]
        y = gy.ravel() + rng.uniform(-4, 4, gy.size)
        x = gx.ravel() + rng.uniform(-4, 4, gx.size)
        flux = np.exp(rng.uniform(np.log(2), np.log(200), len(x)))
        image = prf.render(shape, y, x, flux) + 3.0 + sigma * noise(shape)
        res = fit_prf(image, np.full(shape, sigma), x + rng.normal(0, 0.1, len(x)),
                      y + rng.normal(0, 0.1, len(y)), prf=prf, correlation=correlation)
        pulls.append((res["flux_fit"] - flux) / res["flux_err"])
        pulls_indep.append((res["flux_fit"] - flux) / res["flux_err_indep"])
    return np.concatenate(pulls), np.concatenate(pulls_indep)


def test_prf_fit_pulls_white_noise():
    rng = np.random.default_rng(11)
    prf = mosaic_prf(24, pixel_arcsec=2.45, resampling="none")
    pulls, _ = _pulls(prf, 0.05, lambda s: rng.normal(size=s), rng)
    n = len(pulls)
    assert abs(np.mean(pulls)) < 4 / np.sqrt(n)
    assert abs(np.std(pulls) - 1) < 4 / np.sqrt(2 * n)


def test_prf_fit_pulls_correlated_noise():
    """Noise correlated by a known kernel: the sandwich errors give unit pulls, the
    independent-pixel errors do not."""
    rng = np.random.default_rng(12)
    h = np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1]).astype(float)
    rho = signal.correlate2d(h, h)
    rho /= rho.max()

    def noise(shape):
        c = ndimage.correlate(rng.normal(size=shape), h, mode="wrap")
        return c / np.sqrt((h ** 2).sum())

    prf = mosaic_prf(70, pixel_arcsec=4.0)
    pulls, indep = _pulls(prf, 0.05, noise, rng, correlation=rho)
    n = len(pulls)
    assert abs(np.mean(pulls)) < 4 / np.sqrt(n)
    assert abs(np.std(pulls) - 1) < 4 / np.sqrt(2 * n)
    assert np.std(indep) > 2.0


# ----------------------------------------------------------------------------- apertures

def test_aperture_sums_equal_photutils():
    """Sums, annulus medians and sky-subtracted fluxes are photutils' own to 1e-6."""
    rng = np.random.default_rng(21)
    shape = (120, 140)
    image = rng.normal(10.0, 1.0, shape)
    unc = np.full(shape, 1.0)
    y, x = _field(rng, 25, shape, margin=20)
    raw = measure_apertures(image, unc, x, y, radius_pix=3.3, annulus_pix=(8.0, 13.0))
    ap = CircularAperture(np.c_[x, y], 3.3)
    ref = aperture_photometry(image, ap, method="exact")["aperture_sum"]
    np.testing.assert_allclose(raw["aperture_sum"], ref, rtol=1e-6)
    from astropy.stats import SigmaClip
    sky = ApertureStats(image, CircularAnnulus(np.c_[x, y], 8.0, 13.0),
                        sigma_clip=SigmaClip(sigma=3.0, maxiters=10)).median
    np.testing.assert_allclose(raw["sky"], sky, rtol=1e-6)
    np.testing.assert_allclose(raw["flux_raw"], ref - sky * ap.area, rtol=1e-6, atol=1e-9)
    # independent noise: the error is sqrt(sum w^2 sigma^2) of the exact weights
    w2 = np.array([(m.data ** 2).sum() for m in ap.to_mask(method="exact")])
    np.testing.assert_allclose(raw["aperture_sum_err"], np.sqrt(w2), rtol=1e-9)


def test_aperture_flags_never_a_silent_number():
    shape = (60, 60)
    image = np.full(shape, 5.0)
    unc = np.full(shape, 0.1)
    image[30, 45] = np.nan                    # a hole in the coverage
    mask = np.zeros(shape, dtype=bool)
    mask[10, 45] = True
    x = np.array([1.0, 45.0, 45.0, 30.0, 30.0, np.nan])
    y = np.array([30.0, 30.0, 10.0, 30.0, 30.0, 30.0])
    raw = measure_apertures(image, unc, x, y, radius_pix=3.0, annulus_pix=(6.0, 9.0), mask=mask)
    flags = np.asarray(raw["flags"])
    assert flags[0] & PhotFlag.OFF_IMAGE and np.isnan(raw["flux_raw"][0])
    assert flags[1] & PhotFlag.NO_COVERAGE and np.isnan(raw["flux_raw"][1])
    assert flags[2] & PhotFlag.MASKED and np.isnan(raw["flux_raw"][2])
    assert flags[3] == 0 and np.isfinite(raw["flux_raw"][3])
    assert flags[5] & PhotFlag.OFF_IMAGE and np.isnan(raw["flux_raw"][5])
    few = measure_apertures(image, unc, [30.0], [30.0], radius_pix=3.0, annulus_pix=(6.0, 6.5),
                            min_sky_pixels=50)
    assert few["flags"][0] & PhotFlag.FEW_SKY_PIXELS and np.isnan(few["flux_raw"][0])


def _wcs(shape, pix_arcsec):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [53.1, -27.8]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-pix_arcsec / 3600, pix_arcsec / 3600]
    return w


def test_aperture_photometry_recovers_model_flux():
    """On a noiseless image of the mosaic PRF, corrected aperture fluxes equal the input (the
    model's image-PSF correction times the resampling factor) to the phase scatter."""
    band, pix = 24, 2.45
    prf = mosaic_prf(band, pixel_arcsec=pix, radius_pix=16)
    rng = np.random.default_rng(31)
    shape = (200, 200)
    gy, gx = np.mgrid[25:180:38, 25:180:38]
    y = gy.ravel() + rng.uniform(0, 1, gy.size)
    x = gx.ravel() + rng.uniform(0, 1, gx.size)
    flux_ujy = np.full(len(x), 1e4)
    image = prf.render(shape, y, x, flux_ujy / ujy_per_mjysr(pix)) + 20.0
    res = aperture_photometry_uJy(image, np.full(shape, 0.01), x, y, wcs=_wcs(shape, pix),
                                  band=band, psf="simulator")
    ratio = res["flux"].value / flux_ujy
    assert abs(np.mean(ratio) - 1) < 0.003
    assert res.meta["aperture_correction_resampling"] > 1.005


# ----------------------------------------------------------------------------- detection

def test_detection_finds_bright_sources_at_their_positions():
    prf = mosaic_prf(24, pixel_arcsec=2.45)
    rng = np.random.default_rng(41)
    shape = (200, 200)
    gy, gx = np.mgrid[20:190:25, 20:190:25]
    y = gy.ravel() + rng.uniform(-3, 3, gy.size)
    x = gx.ravel() + rng.uniform(-3, 3, gx.size)
    image = prf.render(shape, y, x, np.full(len(x), 3.0)) + 30.0 + rng.normal(0, 0.02, shape)
    det = detect_sources(image, np.full(shape, 0.02), prf=prf, nsigma=5.0)
    d = np.hypot(det["x"][:, None] - x[None], det["y"][:, None] - y[None])
    assert len(det) == len(x)
    assert np.all(d.min(axis=0) < 0.3)


# ----------------------------------------------------------------------------- files, CLI, bad input

def _mosaic_file(path, *, bunit="MJy/sr", wcs=True, unc=True, band=24, n=12, seed=51):
    shape = (150, 150)
    pix = PIX[band]
    prf = mosaic_prf(band, pixel_arcsec=pix)
    rng = np.random.default_rng(seed)
    gy, gx = np.mgrid[25:140:30, 25:140:30]
    y, x = gy.ravel()[:n] + rng.uniform(-2, 2, n), gx.ravel()[:n] + rng.uniform(-2, 2, n)
    image = prf.render(shape, y, x, np.full(n, 50.0)) + 30.0 + rng.normal(0, 0.02, shape)
    header = _wcs(shape, pix).to_header() if wcs else fits.Header()
    if bunit is not None:
        header["BUNIT"] = bunit
    header["BAND"] = band
    hdus = [fits.PrimaryHDU(image.astype(np.float32), header=header)]
    if unc:
        hdus.append(fits.ImageHDU(np.full(shape, 0.02, np.float32), name="UNC"))
    hdus.append(fits.ImageHDU(np.full(shape, 10, np.int16), name="COV"))
    fits.HDUList(hdus).writeto(path)
    return path, x, y


@pytest.mark.parametrize("kw, words", [
    ({"bunit": None}, "no BUNIT"), ({"bunit": "DN"}, "expected MJy/sr"),
    ({"bunit": "furlongs"}, "not a unit"), ({"wcs": False}, "celestial WCS"),
    ({"unc": False}, "UNC")])
def test_bad_mosaics_refused_naming_the_file(tmp_path, kw, words):
    path, _, _ = _mosaic_file(tmp_path / "m.fits", **kw)
    with pytest.raises(InputError) as err:
        read_mosaic(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value)


def test_not_fits_refused(tmp_path):
    bad = tmp_path / "junk.fits"
    bad.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match="junk.fits"):
        read_mosaic(bad)


def test_cli_writes_catalog_and_refuses_overwrite(tmp_path, capsys):
    path, x, _ = _mosaic_file(tmp_path / "m.fits")
    out = tmp_path / "cat.ecsv"
    assert main(["photometry", str(path), "--out", str(out), "--votable", "--psf", "simulator"]) == 0
    cat = QTable.read(out)
    assert str(cat["flux"].unit) == "uJy" and str(cat["ra"].unit) == "deg"
    assert "aperture_correction" not in cat.meta and cat.meta["ujy_per_mjysr_pixel"] > 141
    assert len(cat) == len(x)
    np.testing.assert_allclose(cat["flux"].value, 50.0 * ujy_per_mjysr(2.45), rtol=0.03)
    assert np.all(np.abs(cat["flux"].value / (50.0 * ujy_per_mjysr(2.45)) - 1)
                  < 4 * cat["flux_err"].value / cat["flux"].value)
    assert out.with_suffix(".vot").exists()
    before = out.read_bytes()
    assert main(["photometry", str(path), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["photometry", str(path), "--out", str(out), "--overwrite", "--method",
                 "aperture", "--psf", "simulator"]) == 0
    cat = QTable.read(out)
    assert cat.meta["method"] == "aperture" and cat.meta["aperture_correction"] > 1.5


def test_cli_bad_mosaic_one_line_error(tmp_path, capsys):
    path, _, _ = _mosaic_file(tmp_path / "nounit.fits", bunit=None)
    assert main(["photometry", str(path), "--out", str(tmp_path / "c.ecsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nounit.fits" in err and "BUNIT" in err
    assert not (tmp_path / "c.ecsv").exists()


def test_forced_positions_off_the_image_are_nan(tmp_path):
    path, x, y = _mosaic_file(tmp_path / "m.fits")
    mos = read_mosaic(path)
    ra, dec = mos.wcs.pixel_to_world_values(np.r_[x[:2], -50.0], np.r_[y[:2], 75.0])
    pos = QTable({"ra": ra, "dec": dec})
    for method in ("aperture", "prf"):
        cat = measure(mos, method=method, psf="simulator", positions=pos)
        assert np.isfinite(cat["flux"][:2]).all()
        assert np.isnan(cat["flux"][2]) and cat["flags"][2] & PhotFlag.OFF_IMAGE


def test_write_catalog_atomic_and_refuses(tmp_path):
    path, _, _ = _mosaic_file(tmp_path / "m.fits")
    cat = measure(path, psf="simulator")
    out = tmp_path / "c.ecsv"
    write_catalog(cat, out)
    with pytest.raises(FileExistsError, match="c.ecsv"):
        write_catalog(cat, out)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("order", [None, 1, 2])
def test_prf_fit_background_orders_exact(order):
    """A background that is a plane or a quadratic is fitted exactly by that order; none at all
    with ``background_order=None`` on a background-free image."""
    prf = mosaic_prf(70, pixel_arcsec=4.0)
    rng = np.random.default_rng(61)
    shape = (160, 160)
    gy, gx = np.mgrid[20:150:30, 20:150:30]
    y = gy.ravel() + rng.uniform(0, 1, gy.size)
    x = gx.ravel() + rng.uniform(0, 1, gx.size)
    flux = rng.uniform(20, 200, len(x))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    sky = {None: 0.0, 1: 3.0 + 0.01 * xx - 0.02 * yy,
           2: 3.0 + 0.01 * xx - 0.02 * yy + 2e-4 * xx ** 2 - 1e-4 * xx * yy + 3e-4 * yy ** 2}[order]
    image = prf.render(shape, y, x, flux) + sky
    res = fit_prf(image, np.full(shape, 0.05), x + 0.1, y - 0.1, prf=prf, background_order=order,
                  tol_pix=1e-10, tol_sigma=0.0, max_iter=40)
    np.testing.assert_allclose(res["flux_fit"], flux, rtol=1e-6)


# ----------------------------------------------------------------------------- background scope

def _cirrus_chain(rng, prf, shape=(120, 260)):
    """A chain of blended 160 um sources (1.2 fit radii apart: one fit group) across a cirrus wave
    of 5' (37 pixels of 8") and 1 MJy/sr amplitude, as the simulator draws at 160 um."""
    r_fit = 1.5 * prf.fwhm_pix
    x = 30.0 + 1.2 * r_fit * np.arange(18) + rng.uniform(-1, 1, 18)
    y = 60.0 + rng.uniform(-4, 4, 18)
    flux = np.exp(rng.uniform(np.log(60.0), np.log(600.0), len(x)))   # MJy/sr x pixel
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    sky = 12.0 + 1.0 * np.sin(2 * np.pi * (0.8 * xx + 0.6 * yy) / 37.0 + 0.3)
    return prf.render(shape, y, x, flux), sky, x, y, flux


def test_source_background_follows_cirrus_along_a_chain():
    """On a 160 um chain of blends over a cirrus wave, one background per fit group misreads the
    sources by tens of percent (any order); a quadratic per source, blended between discs, reads
    every one within 5 % (noise-free: the model's error, not noise), and a quadratic sky exactly."""
    prf = mosaic_prf(160, pixel_arcsec=8.0)
    src, sky, x, y, flux = _cirrus_chain(np.random.default_rng(5), prf)
    unc = np.full(src.shape, 0.1)
    for order in (0, 2):
        grp = fit_prf(src + sky, unc, x, y, prf=prf, fit_positions=False, background_order=order)
        assert grp["group_size"].max() == len(x)                 # the chain is one group
        assert np.sqrt(np.mean((grp["flux_fit"] / flux - 1) ** 2)) > 0.2
    own = fit_prf(src + sky, unc, x, y, prf=prf, fit_positions=False, background_order=2,
                  background_scope="source")
    assert np.max(np.abs(own["flux_fit"] / flux - 1)) < 0.05
    yy, xx = np.mgrid[0:src.shape[0], 0:src.shape[1]]
    quadratic = 12.0 + 0.02 * xx - 0.03 * yy + 1e-4 * (xx - 100) ** 2 - 2e-4 * xx * yy
    exact = fit_prf(src + quadratic, unc, x, y, prf=prf, fit_positions=False, background_order=2,
                    background_scope="source")
    np.testing.assert_allclose(exact["flux_fit"], flux, rtol=1e-8)


def test_source_background_pulls_on_a_chain():
    """With white noise, per-source backgrounds give unbiased fluxes with honest errors: pull
    mean within 4 / sqrt(n) of 0, spread within 4 / sqrt(2 n) of 1 (on a plane sky, which the
    model holds, so that only noise is left; planes and quadratics)."""
    prf = mosaic_prf(160, pixel_arcsec=8.0, resampling="none")
    rng = np.random.default_rng(7)
    pulls = {1: [], 2: []}
    for _ in range(12):
        src, _, x, y, flux = _cirrus_chain(rng, prf)
        yy, xx = np.mgrid[0:src.shape[0], 0:src.shape[1]]
        image = src + 12.0 + 0.02 * xx - 0.03 * yy + rng.normal(0, 0.5, src.shape)
        for order, found in pulls.items():
            res = fit_prf(image, np.full(src.shape, 0.5), x, y, prf=prf, fit_positions=False,
                          background_order=order, background_scope="source")
            found.append((res["flux_fit"] - flux) / res["flux_err"])
    for order, p in pulls.items():
        p = np.concatenate(p)
        n = len(p)
        assert abs(np.mean(p)) < 4 / np.sqrt(n), order
        assert abs(np.std(p) - 1) < 4 / np.sqrt(2 * n), order


def test_prf_fit_unbiased_with_poisson_dominated_noise():
    """Sources whose own shot noise dominates their pixels' variance: with weights from the
    expected variance (background + source model, not the noisy data) the fitted fluxes are
    unbiased: the mean of (F - F_true) / sigma_F is within 4 / sqrt(n) of 0 over n sources."""
    prf = mosaic_prf(160, pixel_arcsec=8.0, resampling="none")
    rng = np.random.default_rng(17)
    shape = (200, 200)
    z = []
    for _ in range(10):
        gy, gx = np.mgrid[25:180:50, 25:180:50]
        y = gy.ravel() + rng.uniform(-3, 3, gy.size)
        x = gx.ravel() + rng.uniform(-3, 3, gx.size)
        flux = np.full(len(x), 2000.0)                  # counts; peak ~80 counts on 1 of sky
        expected = prf.render(shape, y, x, flux) + 1.0
        image = rng.poisson(expected).astype(float)
        res = fit_prf(image, np.sqrt(expected), x, y, prf=prf, fit_positions=False)
        z.append((res["flux_fit"] - flux) / res["flux_err"])
    z = np.concatenate(z)
    assert abs(np.mean(z)) < 4 / np.sqrt(len(z))
