"""Stim responsivity: SSC rules (discard non-positive, interpolate, nearest at the ends) on exact inputs."""
import numpy as np
import pytest

from calibration.bitmask import BMASK
from reprocess.stim import (NoStimError, StimResponse, calibrate, constant_response,
                            interpolate_response, same_sky, stim_minus_background)
from reprocess.stim.response import common_at
from reprocess.stim.wander import Hits, WanderModel


def _response():
    t = np.array([0.0, 10.0, 20.0])
    value = np.array([[[100.0, 50.0]], [[200.0, np.nan]], [[300.0, np.nan]]])
    return StimResponse(t, value, np.full(value.shape, 2.0))


def test_interpolates_linearly_between_flashes():
    t = np.array([0.0, 10.0, 20.0])
    value = np.array([[[100.0, 50.0, 80.0]], [[200.0, 100.0, 160.0]], [[300.0, 150.0, 240.0]]])
    v, e, f = interpolate_response(StimResponse(t, value, np.full(value.shape, 2.0)), 15.0)
    assert v[0, 0] == pytest.approx(250.0) and f[0, 0] == 0
    # the flashes' noise, carried through the common drift's scaling (c(t) / c_k = 1.25/1 and 1.25/1.5)
    assert e[0, 0] == pytest.approx(np.hypot(0.5 * 2.0 * 1.25 / 1.0, 0.5 * 2.0 * 1.25 / 1.5))


def test_common_drift_follows_its_curvature_between_flashes():
    t = np.arange(6.0) * 10
    common = 1 + 0.01 * np.sin(t / 15)
    value = common[:, None, None] * np.array([[[100.0, 80.0, 120.0]]])
    r = StimResponse(t, value, np.full(value.shape, 0.1))
    v, _, _ = interpolate_response(r, 25.0)
    # a spline through the common drift beats the chord by far (chord error 0.01 * ~0.3 %)
    assert v[0, 0] == pytest.approx(100 * (1 + 0.01 * np.sin(25 / 15)), rel=2e-4)


def test_nearest_flash_at_the_ends_never_extrapolated():
    v, _, f = interpolate_response(_response(), -5.0)
    assert v[0, 0] == 100.0 and f[0, 0] & BMASK["STIM_NEAREST"]
    v, _, f = interpolate_response(_response(), 99.0)
    assert v[0, 0] == 300.0 and f[0, 0] & BMASK["STIM_NEAREST"]


def test_pixel_with_one_valid_flash_follows_the_common_drift():
    r = _response()
    v, _, f = interpolate_response(r, 15.0)               # pixel 2: only the first flash is valid
    np.testing.assert_allclose(r.common, [0.75, 1.0, 1.5])  # medians of (0.5, 1), (1,), (1.5,)
    assert v[0, 1] == pytest.approx(50.0 * common_at(r, 15.0) / r.common[0])
    assert f[0, 1] & BMASK["STIM_NEAREST"]


def test_flagged_jumps_add_their_step_variance():
    """One jump between two flashes: the error grows by step_var (w - [t_h <= t])^2 there only."""
    t = np.array([0.0, 10.0, 20.0])
    value = np.full((3, 1, 3), 100.0)
    r = StimResponse(t, value, np.full(value.shape, 1e-6))
    r.wander = WanderModel(kappa=0.0, step_var=1e-4, hits=Hits(np.array([3.0]), np.array([1])))
    v, e, _ = interpolate_response(r, 2.5)
    assert e[0, 1] == pytest.approx(100.0 * np.sqrt(1e-4) * 0.25, rel=1e-6)    # w = 0.25, hit after t
    assert e[0, 0] < 1e-5 and v[0, 1] == pytest.approx(100.0)
    _, e, _ = interpolate_response(r, 15.0)
    assert e[0, 1] < 1e-5                                                      # hit in another gap


def test_pixel_without_valid_flash_is_flagged():
    r = _response()
    r.value[:, 0, 1] = np.nan
    v, _, f = interpolate_response(r, 5.0)
    assert np.isnan(v[0, 1]) and f[0, 1] & BMASK["NO_STIM"]


def _flash_series(n_flash=8, *, first=1.0, fired=True, rng=None):
    """Sky DCE, stim DCE, sky DCE, ... at one pointing; responsivity rising 1 % per flash."""
    n = 2 * n_flash + 1
    times = np.arange(n, dtype=float)
    is_stim = times % 2 == 1
    resp = 1.0 + 0.005 * times
    sky, stim = 100.0, 1000.0 * fired
    slopes = (resp * (sky + stim * is_stim))[:, None, None] * np.ones((n, 2, 3))
    if first != 1.0:
        slopes[1] += (first - 1.0) * stim * resp[1]
    errs = np.full(slopes.shape, 1.0)
    if rng is not None:
        slopes = slopes + rng.standard_normal(slopes.shape)
    return slopes, errs, is_stim, times, np.ones((n, n), dtype=bool)


def test_background_is_interpolated_to_the_flash_time():
    slopes, errs, is_stim, times, match = _flash_series()
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    # background = resp(t) * sky exactly, so the flash equals resp(t) * stim at its own time
    np.testing.assert_allclose(r.value[:, 0, 0], 1000.0 * (1.0 + 0.005 * times[is_stim]))
    np.testing.assert_allclose(r.t, times[is_stim])
    assert r.report["n_usable"] == 8


def test_background_only_from_dces_at_the_same_sky():
    slopes, errs, is_stim, times, match = _flash_series(3)
    slopes[2] += 500.0                              # the DCE after flash 1 saw other sky ...
    match[:, 2] = match[2, :] = False               # ... and is not matched
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    assert r.value[0, 0, 0] == pytest.approx(1000.0 * 1.005)   # nearest matching sky only: t=0
    assert np.isfinite(r.value).all()


def test_flash_that_did_not_fire_is_refused():
    slopes, errs, is_stim, times, match = _flash_series(fired=False, rng=np.random.default_rng(1))
    with pytest.raises(NoStimError, match="did it fire"):
        stim_minus_background(slopes, errs, is_stim, times, match)


def test_no_stim_dce_at_all_is_a_clear_error():
    slopes, errs, is_stim, times, match = _flash_series(3)
    with pytest.raises(NoStimError, match="no usable stim flash among 0"):
        stim_minus_background(slopes, errs, np.zeros_like(is_stim), times, match)


def test_non_positive_and_insignificant_pixels_are_discarded():
    slopes, errs, is_stim, times, match = _flash_series(3)
    slopes[3, 0, 0] = slopes[2, 0, 0] - 5.0           # negative stim-minus-background
    slopes[3, 0, 1] = 0.5 * (slopes[2, 0, 1] + slopes[4, 0, 1]) + 3.0   # 3 sigma: not a flash
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    assert np.isnan(r.value[1, 0, 0]) and np.isnan(r.value[1, 0, 1]) and np.isfinite(r.value[1, 0, 2])


@pytest.mark.parametrize("first, mode, dropped", [(1.05, "auto-drop", True), (0.95, "auto-drop", True),
                                                  (1.0, "auto-drop", False), (1.0, "drop", True),
                                                  (1.05, "keep", False)])
def test_anomalous_first_flash_dropped(first, mode, dropped):
    slopes, errs, is_stim, times, match = _flash_series(first=first, rng=np.random.default_rng(2))
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim=mode)
    assert (r.t[0] == times[3]) == dropped
    assert (len(r.report["dropped"]) == 1) == dropped


@pytest.mark.parametrize("first", [1.05, 0.97, 1.0])
def test_anomalous_first_flash_rescaled(first):
    slopes, errs, is_stim, times, match = _flash_series(first=first, rng=np.random.default_rng(3))
    r = stim_minus_background(slopes, errs, is_stim, times, match)
    assert r.t[0] == times[1] and not r.report["dropped"]
    assert ("rescaled" in r.report) == (first != 1.0)
    # the rescaled flash matches the true responsivity to its noise (1 DN/s on 1000) plus the scatter
    assert r.value[0, 0, 0] == pytest.approx(1000.0 * 1.005, abs=5 * np.hypot(1.5, r.err[0, 0, 0]))


def test_same_sky_within_tolerance_tied_to_pixels():
    pix = np.radians(10.0 / 3600)                     # a 10" pixel
    ra = np.radians([0.0, 0.3 / 3600, 1.0 / 3600, 8.0 / 3600])
    vec = np.stack([np.cos(ra), np.sin(ra), np.zeros(4)], axis=-1)[:, None, :]
    m = same_sky(vec, 0.25 * pix)
    assert m[0, 1] and m[0, 2] and not m[0, 3] and m[3, 3]


def test_calibrate_exact():
    image, unc = calibrate(np.array(300.0), np.array(3.0), np.array(100.0), np.array(0.0),
                           dark=0.5, illum=2.0, fluxconv=10.0)
    assert image == pytest.approx((3.0 - 0.5) * 10.0 / 2.0) and unc == pytest.approx(0.03 * 5.0)


def test_constant_response_is_the_median():
    v, _, f = constant_response(_response())
    assert v[0, 0] == 200.0 and v[0, 1] == 50.0 and not f.any()


def test_calibrate_propagates_product_uncertainties():
    image, unc = calibrate(np.array(300.0), np.array(0.0), np.array(100.0), np.array(0.0),
                           dark=0.5, illum=2.0, fluxconv=10.0, dark_err=0.1, illum_err=0.02)
    expect = np.hypot(0.1 * 10.0 / 2.0, image * 0.01)    # FLUXCONV's error is a header systematic
    assert image == pytest.approx(12.5) and unc == pytest.approx(expect)


def test_product_uncertainties_round_trip(tmp_path):
    from calibration.products import load_products, write_products
    prod = load_products(70)
    prod.errors = {"illum": np.full(prod.illum.shape, 0.01), "fluxconv": 2.5}
    write_products(prod, tmp_path / "p.fits")
    back = load_products(70, tmp_path / "p.fits")
    assert back.error("fluxconv") == 2.5 and back.error("dark") == 0.0
    np.testing.assert_allclose(back.error("illum"), 0.01, rtol=1e-6)


def test_flash_at_an_unmatched_pointing_uses_its_neighbours_in_time():
    slopes, errs, is_stim, times, match = _flash_series(4)
    match[3, :] = match[:, 3] = False                 # flash 2 pointed where no sky DCE did
    match[3, 3] = True
    slopes[4] += 4.0                                  # the sky after it differs a little
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    assert r.report["neighbour_background"] == [3]
    assert r.value[1, 0, 0] == pytest.approx(1000.0 * 1.015 - 2.0)
    assert r.err[1, 0, 0] == pytest.approx(np.sqrt(1 + 0.5 + 0.25 * (106.0 - 101.0) ** 2))


@pytest.mark.parametrize("factor, dropped", [(0.9, True), (1.04, True), (1.0, False)])
def test_misfired_interior_flash_is_dropped(factor, dropped):
    slopes, errs, is_stim, times, match = _flash_series(20, rng=np.random.default_rng(4))
    slopes[21] = slopes[20] + factor * (slopes[21] - slopes[20])     # flash 11 of 20 misfires
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    assert (21.0 not in r.t) == dropped
    assert len(r.t) == 20 - dropped


def test_a_real_responsivity_step_is_not_taken_for_a_misfire():
    slopes, errs, is_stim, times, match = _flash_series(20, rng=np.random.default_rng(6))
    slopes[20:] *= 1.03                          # every pixel's responsivity steps up 3 % at t = 20
    r = stim_minus_background(slopes, errs, is_stim, times, match, first_stim="keep")
    assert len(r.t) == 20 and not r.report["dropped"]
