"""Shared fixtures: small simulated observations (read-only: tests copy what they damage)."""
import importlib.util

import numpy as np
import pytest

from mipssim.config import load_config
from mipssim.observe import simulate

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
# the ramp kernels, for @pytest.mark.parametrize("kernel", KERNELS): numba is in the test extra,
# so CI runs both; a checkout without it still tests the numpy fallback
KERNELS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="no numba"))]


def make_ramps(rates, *, nreads, read_time, gain, read_noise, rng):
    """Linear ramps (NREADS, 1, P) in DN with per-read Poisson and read noise."""
    rates = np.asarray(rates, dtype=float)
    electrons = rng.poisson(rates * read_time * gain, size=(nreads, rates.size))
    q = np.cumsum(electrons, axis=0) / gain
    return (q + rng.normal(0.0, read_noise, q.shape))[:, None, :]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def obs70(tmp_path_factory):
    """A 12-DCE 70 um photometry AOR (2 stim flashes), simulated once per session."""
    d = tmp_path_factory.mktemp("small70")
    simulate(load_config(n_dce=12, seed=2), d)
    return d


@pytest.fixture(scope="session")
def obs24(tmp_path_factory):
    """A 5-DCE 24 um photometry AOR, simulated once per session."""
    d = tmp_path_factory.mktemp("small24")
    simulate(load_config(band=24, n_dce=5, seed=2), d)
    return d
