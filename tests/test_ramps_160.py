"""160 um DCEs of two ramps: saturation stays within its ramp, and the reset needs no NRAMPS keyword."""
import shutil

import numpy as np
import pytest
from astropy.io import fits

from calibration.bitmask import BMASK
from calibration.instrument import ge_ramps_per_dce
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.io import read_raw_dce
from reprocess.pipeline import reprocess
from reprocess.sloper import slope_dce

from .conftest import make_ramps

DT, GAIN, RN, SAT = 0.131072, 7.1, 20.0, 61000.0
KW = dict(read_time=DT, gain=GAIN, read_noise=RN, saturation_dn=SAT, enl_beta=0.0, enl_zero=0.0,
          apply_nonlinearity=False)


def test_saturation_in_the_first_ramp_keeps_the_second():
    """A hit saturates ramp 1 at read 25: the slope fuses reads 0-23 (the read before the first
    saturated one is not used either) and the whole of ramp 2."""
    rng = np.random.default_rng(4)
    rates = np.full(64, 800.0)
    cube = np.concatenate([make_ramps(rates, nreads=40, read_time=DT, gain=GAIN, read_noise=RN, rng=rng)
                           for _ in range(2)]) + 3000.0
    cube[25:40] += SAT                                    # saturated from read 25 to the reset
    fit = slope_dce(cube, nramps=2, **KW)
    first, second = slope_dce(cube[:24], nramps=1, **KW), slope_dce(cube[40:], nramps=1, **KW)
    w1, w2 = first.slope_err ** -2, second.slope_err ** -2
    np.testing.assert_allclose(fit.slope, (w1 * first.slope + w2 * second.slope) / (w1 + w2), rtol=1e-12)
    np.testing.assert_allclose(fit.slope_err, (w1 + w2) ** -0.5, rtol=1e-12)
    assert np.all(fit.first_unusable == 24)
    assert np.all(fit.flags & BMASK["SATURATED"]) and np.all(fit.flags & BMASK["SHORT_RAMP"])
    assert not np.any(fit.flags & BMASK["NO_SLOPE"])


def test_ramp_rule():
    assert ge_ramps_per_dce(160, 80) == 2
    assert ge_ramps_per_dce(160, 24) == ge_ramps_per_dce(160, 32) == ge_ramps_per_dce(70, 80) == 1


@pytest.fixture(scope="module")
def obs160(tmp_path_factory):
    d = tmp_path_factory.mktemp("obs160")
    simulate(load_config(band=160, n_dce=12, seed=17), d / "with")
    shutil.copytree(d / "with" / "raw", d / "without" / "raw")
    for path in (d / "without" / "raw").glob("*_raw.fits"):
        with fits.open(path, mode="update") as h:
            del h[0].header["NRAMPS"]
    return d


def test_raw_dce_finds_the_reset_without_the_keyword(obs160):
    for path in (obs160 / "without" / "raw").glob("*_raw.fits"):
        dce = read_raw_dce(path)
        assert "NRAMPS" not in dce.header and dce.nramps == 2


def test_160um_folder_without_nramps_reprocesses_to_the_same_bcds(obs160):
    reprocess(obs160 / "with")
    reprocess(obs160 / "without")
    products = sorted((obs160 / "with" / "bcd").glob("*_b*.fits"))
    assert len(products) == 3 * 10
    for p in products:
        a, b = fits.getdata(p), fits.getdata(obs160 / "without" / "bcd" / p.name)
        np.testing.assert_array_equal(a, b, err_msg=p.name)
