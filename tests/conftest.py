import numpy as np
import pytest


def make_ramps(rates, *, nreads, read_time, gain, read_noise, rng):
    """Linear ramps (NREADS, 1, P) in DN with per-read Poisson and read noise."""
    rates = np.asarray(rates, dtype=float)
    electrons = rng.poisson(rates * read_time * gain, size=(nreads, rates.size))
    q = np.cumsum(electrons, axis=0) / gain
    return (q + rng.normal(0.0, read_noise, q.shape))[:, None, :]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
