"""Stim responsivity: SSC rules (discard non-positive, interpolate, nearest at the ends) on exact inputs."""
import numpy as np
import pytest

from calibration.bitmask import BMASK
from reprocess.stim import (StimResponse, calibrate, constant_response, interpolate_response,
                            stim_minus_background)


def _response():
    t = np.array([0.0, 10.0, 20.0])
    value = np.array([[[100.0, 50.0]], [[200.0, np.nan]], [[300.0, np.nan]]])
    return StimResponse(t, value, np.full(value.shape, 2.0))


def test_interpolates_linearly_between_flashes():
    v, e, f = interpolate_response(_response(), 15.0)
    assert v[0, 0] == pytest.approx(250.0) and e[0, 0] == pytest.approx(np.hypot(1.0, 1.0))
    assert f[0, 0] == 0


def test_nearest_flash_at_the_ends_never_extrapolated():
    v, _, f = interpolate_response(_response(), -5.0)
    assert v[0, 0] == 100.0 and f[0, 0] & BMASK["STIM_NEAREST"]
    v, _, f = interpolate_response(_response(), 99.0)
    assert v[0, 0] == 300.0 and f[0, 0] & BMASK["STIM_NEAREST"]
    v, _, f = interpolate_response(_response(), 15.0)    # pixel 2: only the first flash is valid
    assert v[0, 1] == 50.0 and f[0, 1] & BMASK["STIM_NEAREST"]


def test_pixel_without_valid_flash_is_flagged():
    r = _response()
    r.value[:, 0, 1] = np.nan
    v, _, f = interpolate_response(r, 5.0)
    assert np.isnan(v[0, 1]) and f[0, 1] & BMASK["NO_STIM"]


def test_stim_minus_background_discards_non_positive_and_uses_same_pointing():
    slopes = np.array([[[10.0, 10.0]], [[110.0, 5.0]], [[30.0, 12.0]], [[999.0, 999.0]]])
    errs = np.ones_like(slopes)
    is_stim = np.array([False, True, False, False])
    pointing = np.array([0, 0, 0, 1])
    r = stim_minus_background(slopes, errs, is_stim, np.arange(4.0), pointing)
    assert r.value[0, 0, 0] == pytest.approx(110 - 20)     # mean of the DCEs before and after
    assert np.isnan(r.value[0, 0, 1])                      # 5 - 11 < 0: discarded


def test_calibrate_exact():
    image, unc = calibrate(np.array(300.0), np.array(3.0), np.array(100.0), np.array(0.0),
                           dark=0.5, illum=2.0, fluxconv=10.0)
    assert image == pytest.approx((3.0 - 0.5) * 10.0 / 2.0) and unc == pytest.approx(0.03 * 5.0)


def test_constant_response_is_the_median():
    v, _, f = constant_response(_response())
    assert v[0, 0] == 200.0 and v[0, 1] == 50.0 and not f.any()
