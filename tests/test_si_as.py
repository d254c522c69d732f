"""24 um: the laws' inverses (hypothesis), on-board slope emulation, and the chain against truth."""
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from calibration import si_as
from calibration.products import load_si_products
from mips.validate_si import source_droop_offset, validate_si
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.pipeline import reprocess
from reprocess.si_bcd import calibrate_si

images = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 9)),
                elements=st.floats(-1e4, 1e5, allow_nan=False))


@settings(max_examples=80, deadline=None)
@given(image=images, c=st.floats(0, 1), c_row=st.floats(0, 0.2))
def test_droop_correction_inverts_droop(image, c, c_row):
    back = si_as.droop_inverse(si_as.droop_forward(image, c, c_row), c, c_row)
    np.testing.assert_allclose(back, image, rtol=1e-9, atol=1e-6 * (1 + np.abs(image).max()))


@settings(max_examples=40, deadline=None)
@given(dcenum=st.integers(0, 5), f0=st.floats(0.8, 0.95), f12=st.floats(0.95, 1.0),
       csm=st.sampled_from([0.0, 14.025, -28.05]), seed=st.integers(0, 2 ** 31))
def test_calibration_inverts_every_simulated_effect(dcenum, f0, f12, csm, seed):
    """Noiseless forward model (first frame, flat, dark, droop, read-2) -> calibrate_si -> the sky."""
    prod = load_si_products()
    prod.first_frame = np.array([f0, f12, f12])
    rng = np.random.default_rng(seed)
    sky = rng.uniform(20, 60, (128, 128))
    nreads, dt = 20, 0.524288
    ff = si_as.first_frame_factor(dcenum, prod.first_frame)
    flat, _ = prod.flat_for(csm)
    signal = ff * sky / prod.fluxconv * flat + prod.dark_for(dcenum)          # DN/s
    measured = si_as.droop_forward(signal, prod.droop, prod.row_droop)
    slope = measured * dt - prod.read2 * si_as.sur_weight(nreads)[1]        # DN/sample with read-2 bias
    bcd, _, _ = calibrate_si(slope, np.zeros_like(slope), nreads=nreads, read_time=dt, dcenum=dcenum,
                             csm_arcsec=csm, sat_threshold=1800.0, products=prod)
    good = prod.pmask == 0
    np.testing.assert_allclose(bcd[good], sky[good], rtol=1e-9)
    assert np.isnan(bcd[~good]).all()                    # permanently bad pixels have no value


@settings(max_examples=40, deadline=None)
@given(reads=arrays(np.float64, st.tuples(st.integers(2, 60), st.just(3)),
                    elements=st.floats(0, 65535, allow_nan=False)))
def test_sur_slope_is_the_least_squares_slope(reads):
    t = np.arange(reads.shape[0])
    expected = np.polyfit(t, reads, 1)[0]
    np.testing.assert_allclose(si_as.sur_slope(reads), expected, rtol=1e-7, atol=1e-6)


def test_onboard_slope_equals_least_squares_slope_of_simulated_ramp(tmp_path):
    simulate(load_config(band=24, n_dce=3, engineering_ramps=True), tmp_path)
    for f in sorted((tmp_path / "raw").glob("*_raw.fits")):
        with fits.open(f) as h:
            planes, ramp = h[0].data, h["RAMP"].data.astype(float)
        n = ramp.shape[0]
        lsq = np.polyfit(np.arange(n), ramp.reshape(n, -1), 1)[0].reshape(128, 128)
        np.testing.assert_allclose(planes[0], lsq, rtol=1e-5, atol=1e-3)
        assert np.all((planes[1] == 0) | (planes[1] == ramp[1] - ramp[0]))


@pytest.fixture(scope="module")
def default24(tmp_path_factory):
    d = tmp_path_factory.mktemp("obs24")
    simulate(load_config(band=24, seed=21), d)
    reprocess(d)
    return validate_si(d)


def test_calibration_error_24(default24):
    """30 DCEs; per-pixel noise ~0.5 % over ~16000 pixels makes the noise part ~0.005 %."""
    assert default24["n_bcd"] == 29
    assert abs(default24["cal_error_mean"]) <= 0.002
    assert default24["cal_error_rms"] <= 0.003
    assert 0.97 <= default24["bcd_pull_spread"] <= 1.03


def test_every_correction_matters(default24):
    rows = {r["correction"]: r for r in default24["corrections"]}
    assert rows["droop"]["off_mean"] > 0.1
    assert rows["row_droop"]["off_mean"] > 0.005
    # the dark's median (DN/s) against the ~40 MJy/sr zodi, measured against the run's own calibration error
    prod = load_si_products()
    dark_expected = np.median(prod.dark) * prod.fluxconv / 40
    dark_shift = rows["dark"]["off_mean"] - default24["cal_error_mean"]
    assert 0.5 * dark_expected < dark_shift < 1.5 * dark_expected
    assert rows["first_frame"]["off_dcenum_1_2"] < -0.015
    assert rows["flat"]["region_off"] < -0.1 and abs(rows["flat"]["region_on"]) < 0.002
    # read-2: the bias a(y) |w_1| / dt relative to the ~40 MJy/sr zodi in the bottom rows
    expected = np.median(prod.read2[:6]) * abs(si_as.sur_weight(20)[1]) / 0.524288 / (40 / prod.fluxconv)
    # measured against the run's overall calibration error (the products' FLUXCONV is known to ~0.1 %)
    assert 0.5 * expected < rows["read2"]["region_off"] - rows["read2"]["region_on"] < 1.5 * expected
    assert abs(rows["read2"]["region_on"] - default24["cal_error_mean"]) < 0.3 * expected


def test_droop_from_a_bright_source_is_removed(tmp_path):
    base = dict(band=24, seed=5, n_dce=6)
    simulate(load_config(**base, bright_source_jy=5.0), tmp_path / "with")
    simulate(load_config(**base), tmp_path / "without")
    off = source_droop_offset(tmp_path / "with", tmp_path / "without")
    assert off["off"] > 0.002          # the source's droop is visible without the correction (~0.5 %)
    assert abs(off["on"]) <= 0.001     # and gone to <= 0.1 % of the background with it
