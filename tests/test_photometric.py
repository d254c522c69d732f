"""calibration.photometric: unit conversion, colour and aperture corrections, Vega magnitudes.

Reference values and where they come from:

- MIPS Instrument Handbook v3 (HB), https://irsa.ipac.caltech.edu/data/SPITZER/docs/mips/
  mipsinstrumenthandbook/ : 4.3.1 (/48/) units, 4.3.4 (/50/) Table 4.13 aperture corrections,
  4.3.5 (/51/) Table 4.16 colour corrections and reference wavelengths.
- Table 4.16's 24 and 70 um blackbody columns as transcribed, with that URL, in the tests of
  github drgmk/sdf, tests/test_filter.py (commit 6e40d43fea4bf8b28e052c4d715ca99d93ed0da4); its
  160 um column and power-law rows were found in no source reachable here.
- Calibration apertures: SSC "MIPS aperture corrections" page, http://ssc.spitzer.caltech.edu/mips/apercorr/
"""
import astropy.units as u
import numpy as np
import pytest
from scipy.integrate import trapezoid

from calibration.photometric import (
    BANDS,
    CALIBRATION_APERTURES,
    REFERENCE_WAVELENGTH_UM,
    VEGA_ZERO_POINT_JY,
    aperture_correction,
    bandpass,
    colour_correction,
    flux_from_vega_magnitude,
    mean_photon_wavelength_um,
    ujy_per_mjysr,
    vega_magnitude,
)
from calibration.psf import STINYTIM_24_WAVELENGTH_UM, load_prf

# ----------------------------------------------------------------------------- units

# uJy per MJy/sr for the default mosaic pixels (issue 15).  The quoted digits imply 23.50419
# uJy/arcsec^2 per MJy/sr; the exact solid angle gives 23.504430 (1.0e-5 higher; 141.0853, 376.0709,
# 1504.2836), so they are checked to 4e-5 relative, what their printed digits carry.
QUOTED_UJY_PER_MJYSR = {2.45: 141.08, 4.0: 376.067, 8.0: 1504.27}


@pytest.mark.parametrize("pixel, quoted", sorted(QUOTED_UJY_PER_MJYSR.items()))
def test_ujy_per_mjysr_quoted(pixel, quoted):
    assert ujy_per_mjysr(pixel) == pytest.approx(quoted, rel=4e-5)


def test_ujy_per_mjysr_exact_solid_angle():
    # the Handbook prints 23.5045 uJy/arcsec^2 per MJy/sr (HB 4.3.1); the exact value is 23.50443
    assert ujy_per_mjysr(1.0) == pytest.approx(23.5045, abs=1e-4)
    assert ujy_per_mjysr(1.0) == pytest.approx((1.0 * u.MJy / u.sr * u.arcsec ** 2).to_value(u.uJy), rel=1e-12)
    assert ujy_per_mjysr(3.0) == pytest.approx(9 * ujy_per_mjysr(1.0), rel=1e-14)


@pytest.mark.parametrize("bad", [0.0, -2.45, np.nan, np.inf])
def test_ujy_per_mjysr_bad(bad):
    with pytest.raises(ValueError, match="pixel size"):
        ujy_per_mjysr(bad)


# ----------------------------------------------------------------------------- colour corrections

HB_TEMPERATURES_K = (1e4, 5e3, 1e3, 500, 300, 200, 150, 100, 70, 50, 30, 20)
HB_K_BLACKBODY = {      # HB Table 4.16 (via drgmk/sdf, see the module docstring)
    24: (1.000, 0.999, 0.992, 0.983, 0.970, 0.957, 0.948, 0.947, 0.986, 1.119, 2.031, 7.005),
    70: (1.000, 0.999, 0.995, 0.989, 0.980, 0.970, 0.959, 0.938, 0.914, 0.893, 0.901, 1.052),
}


def test_reference_wavelengths_from_bandpasses():
    # lambda_0 = int R dlambda / int R/lambda dlambda (shared/data/real/MANIFEST.md: 23.675, 71.42, 155.89)
    for band in BANDS:
        lam, resp = bandpass(band)
        lam0 = trapezoid(resp, lam) / trapezoid(resp / lam, lam)
        assert lam0 == pytest.approx(REFERENCE_WAVELENGTH_UM[band], rel=3e-4), band


@pytest.mark.parametrize("band", sorted(HB_K_BLACKBODY))
def test_colour_correction_handbook_blackbodies(band):
    for t, k_hb in zip(HB_TEMPERATURES_K, HB_K_BLACKBODY[band]):
        k = colour_correction(band, temperature=t)
        if t >= 50:
            assert k == pytest.approx(k_hb, abs=0.003), (band, t, k)
        else:   # 30 and 20 K: K changes by ~10% per K of temperature; 0.15% and 0.36% at 24 um here
            assert k == pytest.approx(k_hb, rel=0.005), (band, t, k)


def test_colour_correction_160_recalled_values():
    # 160 um values recalled in shared/docs/mips-facts.md 5.2 (UNCONFIRMED: the table was not seen)
    for t, k_hb in ((1000, 0.999), (100, 0.986), (50, 0.971)):
        assert colour_correction(160, temperature=t) == pytest.approx(k_hb, abs=0.003)


def test_colour_correction_reference_and_rayleigh_jeans():
    for band in BANDS:
        assert colour_correction(band, temperature=1e4) == pytest.approx(1.0, abs=1e-12)
        # 10^4 K is Rayleigh-Jeans (nu^2) through these bands to 0.1%; a hotter blackbody tends to it
        assert colour_correction(band, alpha=2.0) == pytest.approx(1.0, abs=1e-3)
        assert colour_correction(band, temperature=1e7) == pytest.approx(
            colour_correction(band, alpha=2.0), abs=2e-6)
        # the power-law K is smooth and has its minimum near alpha = -1.5 (the band centre)
        k = [colour_correction(band, alpha=a) for a in (-3, -2, -1.5, -1, 0)]
        assert k[2] == min(k)


@pytest.mark.parametrize("kwargs, match", [
    ({"band": 25, "temperature": 100.0}, "not a MIPS band"),
    ({"band": 24.5, "temperature": 100.0}, "not a MIPS band"),
    ({"band": "24um", "temperature": 100.0}, "not a MIPS band"),
    ({"band": 24, "temperature": 100.0, "alpha": -1.0}, "exactly one"),
    ({"band": 70}, "exactly one"),
    ({"band": 160, "temperature": 0.0}, "temperature"),
    ({"band": 160, "alpha": np.nan}, "alpha"),
])
def test_colour_correction_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        colour_correction(**kwargs)


def test_mean_photon_wavelength():
    # the STinyTim 24 um PSF's 25 K blackbody, the constant calibration.psf scales the PSF by
    assert mean_photon_wavelength_um(24, temperature=25.0) == pytest.approx(STINYTIM_24_WAVELENGTH_UM,
                                                                             abs=1e-3)
    lam = [mean_photon_wavelength_um(24, temperature=t) for t in (20, 50, 100, 1000, 1e4)]
    assert np.all(np.diff(lam) < 0) and 23.3 < lam[-1] < 23.4


# ----------------------------------------------------------------------------- aperture corrections

def test_aperture_correction_24_handbook_r7():
    # HB Table 4.13 (10^4 K): r = 7", sky 20-32" -> 1.61; the default temperature is the
    # calibrators' (3000 K), whose PSF is that of 10^4 K to 0.1%
    assert aperture_correction(24, 7.0, annulus_arcsec=(20.0, 32.0)) == pytest.approx(1.61, rel=0.02)
    assert aperture_correction(24, 7.0, annulus_arcsec=(20.0, 32.0), temperature=1e4) == pytest.approx(
        1.61, rel=0.02)


HB_TABLE_4_13 = {   # (radius, annulus or None): correction, 24 um, 10^4 K blackbody
    (3.5, (6, 8)): 2.78, (3.5, (7, 13)): 2.80, (3.5, (20, 32)): 2.57, (3.5, (40, 50)): 2.56, (3.5, None): 2.56,
    (7.0, (7, 13)): 2.05, (7.0, (20, 32)): 1.61, (7.0, (40, 50)): 1.61, (7.0, None): 1.61,
    (13.0, (20, 32)): 1.17, (13.0, (40, 50)): 1.16, (13.0, None): 1.16,
    (20.0, (20, 32)): 1.15, (20.0, (40, 50)): 1.13, (20.0, None): 1.12,
}


@pytest.mark.parametrize("key", sorted(HB_TABLE_4_13, key=str))
def test_aperture_correction_24_handbook_table(key):
    radius, annulus = key
    ours = aperture_correction(24, radius, annulus_arcsec=annulus, temperature=1e4)
    # r >= 7" with the sky beyond the first bright ring: 2%; the rest within the HB's "good to ~5%"
    # (worst: r = 7" with a 7-13" sky annulus on the first bright ring, 5.4% low)
    tolerance = 0.02 if radius >= 7 and (annulus is None or annulus[0] >= 20) else 0.06
    assert ours == pytest.approx(HB_TABLE_4_13[key], rel=tolerance)


@pytest.mark.parametrize("band, tolerance", [
    (24, 0.02), (70, 0.02),
    (160, 0.05),        # r = 24" << FWHM (40"): sensitive to the core; 4.3% low
])
def test_aperture_correction_calibration_apertures(band, tolerance):
    radius, annulus, published = CALIBRATION_APERTURES[band]
    assert aperture_correction(band, radius, annulus_arcsec=annulus) == pytest.approx(published, rel=tolerance)


def test_aperture_correction_on_a_pixelised_source():
    """A source rendered by the simulator's PRF on 2.45" pixels, measured by photutils as a user would."""
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    pix, n = 2.45, 41
    prf = load_prf(24, 3000.0, pix)
    k = np.arange(n) - n // 2
    image = prf(k[:, None] + 0.0 * k[None, :], 0.0 * k[:, None] + k[None, :])
    total = image.sum()        # the simulator's PRF sums to 1 over its +-38" extent
    centre = (n // 2, n // 2)
    aperture = CircularAperture(centre, 7.0 / pix)
    sky = ApertureStats(image, CircularAnnulus(centre, 20.0 / pix, 32.0 / pix)).median
    measured = ApertureStats(image, aperture, sum_method="exact").sum - sky * aperture.area
    corrected = measured * aperture_correction(24, 7.0, annulus_arcsec=(20.0, 32.0), psf="simulator")
    # the correction is computed on the PSF's 1.2" grid; 2.45" pixels change the sky median and the
    # aperture's partial pixels by 0.05% here
    assert corrected == pytest.approx(total, rel=0.003)


def test_aperture_correction_kinds():
    # at 70 and 160 um the model is what the simulator renders
    for band, r in ((70, 20.0), (160, 40.0)):
        assert aperture_correction(band, r, psf="model") == aperture_correction(band, r, psf="simulator")
    # the GOODS-S PSF misses the wings beyond 38": ~5% less correction at 7"
    model, sim = aperture_correction(24, 7.0), aperture_correction(24, 7.0, psf="simulator")
    assert 1.03 < model / sim < 1.08
    with pytest.raises(ValueError, match="beyond the 24 um PSF"):
        aperture_correction(24, 35.0, annulus_arcsec=(40.0, 50.0), psf="simulator")
    with pytest.raises(ValueError, match="psf"):
        aperture_correction(24, 7.0, psf="goods")


def test_aperture_correction_colour():
    # redder sources have broader PSFs: larger corrections at 24 and 70 um
    for band in (24, 70):
        c = [aperture_correction(band, 13.0 if band == 24 else 35.0, temperature=t) for t in (20, 50, 100, 3000)]
        assert np.all(np.diff(c) < 0), (band, c)


@pytest.mark.parametrize("kwargs, match", [
    ({"band": 25, "radius_arcsec": 7.0}, "not a MIPS band"),
    ({"band": 24, "radius_arcsec": -7.0}, "aperture radius"),
    ({"band": 24, "radius_arcsec": 0.0}, "aperture radius"),
    ({"band": 24, "radius_arcsec": 7.0, "annulus_arcsec": (5.0, 10.0)}, "annulus"),
    ({"band": 24, "radius_arcsec": 7.0, "annulus_arcsec": (20.0, 15.0)}, "annulus"),
    ({"band": 70, "radius_arcsec": 7.0, "temperature": -5.0}, "temperature"),
    ({"band": 24, "radius_arcsec": 500.0}, "beyond"),
])
def test_aperture_correction_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aperture_correction(**kwargs)


def test_aperture_correction_monotonic():
    radii = [3.5, 7.0, 13.0, 20.0, 30.0]
    for band in BANDS:
        corr = [aperture_correction(band, r) for r in radii]
        assert all(c > 1 for c in corr)
        assert np.all(np.diff(corr) < 0), (band, corr)


# ----------------------------------------------------------------------------- magnitudes

def test_vega_zero_points():
    for band, f0 in VEGA_ZERO_POINT_JY.items():
        assert vega_magnitude(f0, band) == pytest.approx(0.0, abs=1e-12)
        assert vega_magnitude(f0 / 100.0, band) == pytest.approx(5.0, abs=1e-12)
        assert flux_from_vega_magnitude(0.0, band) == pytest.approx(f0, rel=1e-12)


def test_vega_round_trip_arrays_and_quantities():
    rng = np.random.default_rng(15)
    flux = 10 ** rng.uniform(-5, 1, 200)
    for band in BANDS:
        mag = vega_magnitude(flux, band)
        assert mag.shape == flux.shape
        np.testing.assert_allclose(flux_from_vega_magnitude(mag, band), flux, rtol=1e-12)
        np.testing.assert_allclose(vega_magnitude(flux * 1e3 * u.mJy, band), mag, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(flux_from_vega_magnitude(mag * u.mag, band), flux, rtol=1e-12)
    assert isinstance(vega_magnitude(1.0, 24), float)
    assert np.isnan(vega_magnitude(np.array([-1.0, 0.0]), 70)).all()


def test_vega_bad_input():
    with pytest.raises(ValueError, match="not a MIPS band"):
        vega_magnitude(1.0, 25)
    with pytest.raises(ValueError, match="not a MIPS band"):
        flux_from_vega_magnitude(1.0, 12)
    with pytest.raises(ValueError, match="flux density"):
        vega_magnitude(1.0 * u.m, 24)
    with pytest.raises(ValueError, match="Vega magnitudes"):
        flux_from_vega_magnitude(1.0 * u.Jy, 24)
