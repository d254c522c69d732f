"""The ramp kernel's GLS weights are accurate for any rate and read noise (issue 9, item 5)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reprocess.ramps import fit_ramps, gls_weights

from .conftest import KERNELS, make_ramps

DT, GAIN = 0.131072, 7.1

rates = st.one_of(st.just(0.0), st.floats(1e-6, 1e5))          # DN/s
read_noises = st.one_of(st.just(0.0), st.floats(1e-3, 1000.0))  # DN per read


def _matrix_solve(p, s2, m):
    """``C^-1 1`` with ``C = tridiag(-s2, 2 s2 + p, -s2)`` (m x m), by an explicit solve."""
    c = np.diag(np.full(m, 2.0 * s2 + p)) - s2 * (np.eye(m, k=1) + np.eye(m, k=-1))
    return np.linalg.solve(c, np.ones(m))


@settings(max_examples=300, deadline=None)
@given(rate=rates, rn=read_noises, nreads=st.integers(2, 100))
def test_weights_equal_the_matrix_solve(rate, rn, nreads):
    """Over rates 0-1e5 DN/s, read noise 0-1000 DN and 2-100 reads, to 1e-10 relative."""
    if rate == 0.0 and rn == 0.0:
        return                                     # C = 0: covered by the next test
    m = nreads - 1
    p, s2 = rate * DT / GAIN, rn * rn
    w = gls_weights(np.arange(1, m + 1), np.full(m, m), np.array(p), np.array(s2))
    np.testing.assert_allclose(w, _matrix_solve(p, s2, m), rtol=1e-10, atol=0)


def test_weights_without_any_noise_are_uniform_and_finite():
    w = gls_weights(np.arange(1, 8), np.full(7, 7), np.array(0.0), np.array(0.0))
    assert np.all(np.isfinite(w)) and np.ptp(w) == 0 and w[0] > 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_rate_large_read_noise_slope_is_unbiased_with_honest_error(kernel):
    """600 DN read noise, zero rate, 24 reads: scatter equals the reported error, mean is zero.

    Before the stable form the scatter was 303 DN/s against a reported 135 and the
    mean -75 DN/s.  N ramps: the sample standard deviation has relative error
    1/sqrt(2 (N - 1)), the mean sigma/sqrt(N); both are checked at 5 sigma.
    """
    n = 20000
    reads = make_ramps(np.zeros(n), nreads=24, read_time=DT, gain=GAIN, read_noise=600.0,
                       rng=np.random.default_rng(9))
    fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=600.0, kernel=kernel)
    slope, err = fit.slope.ravel(), fit.slope_err.ravel()
    assert np.all(np.isfinite(slope))
    reported = np.median(err)
    # the read-noise-only GLS error of 23 differences, the bound the fit should report
    bound = 1.0 / np.sqrt(np.sum(_matrix_solve(0.0, 600.0 ** 2, 23))) / DT
    assert abs(reported / bound - 1) < 0.01
    assert abs(np.std(slope, ddof=1) / reported - 1) < 5.0 / np.sqrt(2 * (n - 1))
    assert abs(np.mean(slope)) < 5.0 * reported / np.sqrt(n)
