"""FLUXCONV from standard stars (reprocess.calib.fluxconv): exact answers on PRF images, and the
posterior on synthetic measurements."""
from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from calibration.instrument import band_spec
from calibration.psf import load_prf
from calibration.psf import CALIBRATOR_TEMPERATURE_K
from reprocess.calib.fluxconv import fluxconv_posterior, measure_star


def _star_image(band, shape, x, y, flux_jy, background):
    spec = band_spec(band)
    prf = load_prf(band, CALIBRATOR_TEMPERATURE_K[band], spec.pixel_arcsec)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return flux_jy * prf(yy - y, xx - x) / spec.pixel_sr / 1e6 + background


@pytest.mark.parametrize("band, shape, x, y", [(70, (32, 16), 7.3, 15.8), (24, (64, 64), 30.6, 31.2),
                                               (160, (3, 20), 9.4, 1.1)])
def test_a_star_that_follows_the_prf_is_measured_exactly(band, shape, x, y):
    """Aperture photometry with its PRF aperture correction (PRF fit at 160 um) returns the flux
    whatever the background and the sub-pixel position; masked pixels are left out of both."""
    image = _star_image(band, shape, x, y, 1.5, background=12.0)
    good = np.ones(shape, bool)
    if band == 160:
        good[1] = False                                 # the blank middle row
    else:
        good[int(y) + 3, int(x) + 3] = False            # a bad pixel in the annulus
    m = measure_star(image, np.full(shape, 0.01), good, x, y, band=band)
    assert m.value == pytest.approx(1.5, rel=1e-9)
    assert 0 < m.aperture_correction < 1 and m.error > 0


def test_aperture_off_the_good_pixels_is_refused():
    image = _star_image(70, (32, 16), 14.8, 15.0, 1.0, background=10.0)
    good = np.ones((32, 16), bool)
    assert measure_star(image, np.full((32, 16), 0.01), good, 14.8, 15.0, band=70) is None


def test_posterior_recovers_fluxconv_with_calibrated_width():
    """Blocks with extra scatter the errors do not state: the jitter term widens the posterior so
    the truth is inside the 95 % interval, and the interval shrinks with more data."""
    rng = np.random.default_rng(3)
    true = 224.8

    def table(n_blocks):
        flux = np.repeat([0.5, 1.0, 2.0], 5 * n_blocks)
        block = np.repeat(np.arange(3 * n_blocks), 5)
        extra = rng.normal(0, 0.003, 3 * n_blocks)[block]          # shared within a block
        value = flux / true * (1 + extra + rng.normal(0, 0.002, flux.size))
        t = QTable({"flux": flux * u.Jy, "value": value * u.Jy, "error": 0.002 * value * u.Jy,
                    "block": block})
        return t

    small, large = (fluxconv_posterior(table(n), seed=1) for n in (4, 40))
    for post in (small, large):
        lo, hi = post.interval("fluxconv", 0.95)
        assert lo < true < hi
    assert large.sigma("fluxconv") < small.sigma("fluxconv")
    assert np.exp(large.median("log_jitter")) == pytest.approx(0.003, rel=0.4)
