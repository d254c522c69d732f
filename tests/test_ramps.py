"""The ramp kernel: exact answers, invariants (hypothesis) and efficiency at the Cramer-Rao bound."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reprocess.ramps import false_jump_rate, fit_ramps, gls_weights

from .conftest import KERNELS, make_ramps

DT, GAIN = 0.131072, 7.1


def cramer_rao_variance(rates, nreads, read_noise):
    """Variance of GLS on the N-1 differences with their tridiagonal covariance, by explicit inversion."""
    n = nreads - 1
    out = []
    for r in np.atleast_1d(rates):
        p = r * DT / GAIN
        c = (np.diag(np.full(n, 2 * read_noise ** 2 + p)) - np.diag(np.full(n - 1, read_noise ** 2), 1)
             - np.diag(np.full(n - 1, read_noise ** 2), -1))
        out.append(1.0 / (np.ones(n) @ np.linalg.solve(c, np.ones(n)) * DT ** 2))
    return np.array(out)


def test_closed_form_weights_equal_explicit_inverse():
    n, rn = 15, 3.0
    for p in (1e-6, 0.5, 9.0, 1e4):
        c = np.diag(np.full(n, 2 * rn ** 2 + p)) - rn ** 2 * (np.eye(n, k=1) + np.eye(n, k=-1))
        x = np.linalg.solve(c, np.ones(n))
        pos = np.arange(1, n + 1)
        w = gls_weights(pos, np.full(n, n), np.array(p), np.array(rn ** 2))
        np.testing.assert_allclose(w, x, rtol=1e-9)


def test_zero_read_noise_gives_mean_of_differences():
    w = gls_weights(np.arange(1, 6), np.full(5, 5), np.array(2.0), np.array(0.0))
    np.testing.assert_allclose(w, 0.5)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=60, deadline=None)
@given(rate=st.floats(-50, 5000), offset=st.floats(-1000, 1000), nreads=st.integers(4, 80),
       rn=st.floats(0.5, 50))
def test_noiseless_ramp_gives_exact_slope(kernel, rate, offset, nreads, rn):
    reads = (offset + rate * DT * np.arange(nreads))[:, None, None] * np.ones((1, 2, 3))
    fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=rn, kernel=kernel)
    np.testing.assert_allclose(fit.slope, rate, rtol=1e-9, atol=1e-9)
    assert not fit.jumps.any()


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=60, deadline=None)
@given(read=st.integers(1, 31), amp_sigma=st.floats(12, 500), seed=st.integers(0, 2 ** 31))
def test_inserted_jump_is_found_and_does_not_bias(kernel, read, amp_sigma, seed):
    """A jump at any read is flagged there, and the slope equals the fit of the same ramp without it."""
    rng = np.random.default_rng(seed)
    rn = 20.0
    clean = make_ramps(np.full(200, 300.0), nreads=32, read_time=DT, gain=GAIN, read_noise=rn, rng=rng)
    sigma_d = np.sqrt(2 * rn ** 2 + 300.0 * DT / GAIN)
    hit = clean.copy()
    hit[read:] += amp_sigma * sigma_d
    f_clean = fit_ramps(clean, read_time=DT, gain=GAIN, read_noise=rn, kernel=kernel)
    f_hit = fit_ramps(hit, read_time=DT, gain=GAIN, read_noise=rn, kernel=kernel)
    assert f_hit.jumps[read].all()
    # pixels with no false jump in the clean ramp: the hit ramp's slope is the clean ramp's GLS with
    # one difference removed; for nested GLS estimators Var(change) = Var(subset) - Var(full)
    same = ~f_clean.jumps.any(0)
    d = (f_hit.slope - f_clean.slope)[same]
    sigma_change = np.sqrt(np.maximum(f_hit.slope_err ** 2 - f_clean.slope_err ** 2, 0))[same]
    assert np.all(np.abs(d) <= 6 * sigma_change + 1e-9)
    # and the average change is consistent with zero (no bias): |mean| < 4.5 sigma of the mean
    assert abs(d.mean()) < 4.5 * np.sqrt(np.sum(sigma_change ** 2)) / d.size + 1e-9


@settings(max_examples=20, deadline=None)
@given(chunk=st.integers(1, 300), seed=st.integers(0, 2 ** 31))
def test_results_do_not_depend_on_chunking(chunk, seed):
    rng = np.random.default_rng(seed)
    reads = make_ramps(rng.uniform(0, 2000, 240), nreads=24, read_time=DT, gain=GAIN, read_noise=15.0,
                       rng=rng).reshape(24, 12, 20)
    reads[10:, 3, 4] += 5000.0
    good = rng.uniform(size=reads.shape) > 0.02
    a = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=15.0, good=good, kernel="numpy")
    b = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=15.0, good=good, chunk_pixels=chunk,
                  kernel="numpy")
    for name in ("slope", "slope_err", "jumps", "n_reads", "n_segments"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("kernel", KERNELS)
def test_inputs_are_not_modified(rng, kernel):
    reads = make_ramps(np.full(50, 100.0), nreads=10, read_time=DT, gain=GAIN, read_noise=5, rng=rng)
    copy = reads.copy()
    fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=5.0, kernel=kernel)
    np.testing.assert_array_equal(reads, copy)


@pytest.mark.parametrize("kernel", KERNELS)
def test_short_segments_are_not_used(kernel):
    reads = (100.0 * DT * np.arange(12))[:, None, None] * np.ones((1, 1, 1))
    good = np.ones(reads.shape, bool)
    good[3] = False                      # splits into 3 reads + 8 reads
    fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=5.0, good=good, kernel=kernel)
    assert fit.n_segments[0, 0] == 1 and fit.n_reads[0, 0] == 8
    good[:] = False
    good[:3] = True
    fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=5.0, good=good, kernel=kernel)
    assert np.isnan(fit.slope[0, 0]) and fit.n_segments[0, 0] == 0


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bad", [np.zeros((5, 4)), np.zeros((1, 2, 2))])
def test_bad_shapes_raise(bad, kernel):
    with pytest.raises(ValueError, match="reads|ramp"):
        fit_ramps(bad, read_time=DT, gain=GAIN, read_noise=1.0, kernel=kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("read_noise", [20.0, 2.0])
def test_efficiency_at_the_cramer_rao_bound(read_noise, kernel):
    """1e5 Ge-like 32-read ramps, rates 10-3000 DN/s: variance at the bound, pulls ~ N(0,1), both kernels.

    With n = 1e5 the sampling error of a variance ratio is sqrt(2/n) = 0.45%, of the pull spread 0.22%,
    of the false-jump count ~ sqrt(expected): the tolerances below are >= 4 of those sigmas wide
    (the efficiency's exactly 4: 1.8%).
    """
    rng = np.random.default_rng(7)
    n, nreads = 100_000, 32
    rates = np.exp(rng.uniform(np.log(10), np.log(3000), n))
    reads = make_ramps(rates, nreads=nreads, read_time=DT, gain=GAIN, read_noise=read_noise, rng=rng)
    fit = fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=read_noise, kernel=kernel)
    bound = cramer_rao_variance(rates[:2000], nreads, read_noise)
    ratio = np.mean((fit.slope.ravel()[:2000] - rates[:2000]) ** 2 / bound)
    # all n for the efficiency: closed-form bound checked against the explicit one on the first 2000
    pos = np.arange(1, nreads)[:, None] * np.ones((1, n))
    w = gls_weights(pos, np.full(pos.shape, nreads - 1), rates * DT / GAIN, read_noise ** 2)
    bound_all = 1.0 / (w.sum(0) * DT ** 2)
    np.testing.assert_allclose(bound_all[:2000], bound, rtol=1e-8)
    efficiency = np.mean((fit.slope.ravel() - rates) ** 2 / bound_all)
    assert abs(efficiency - 1) < 4 * np.sqrt(2 / n), efficiency
    assert abs(ratio - 1) < 0.15  # 2000 ramps: 3% sampling error
    pull = (fit.slope.ravel() - rates) / fit.slope_err.ravel()
    assert abs(np.median(pull)) < 0.02
    assert 0.98 < pull.std() < 1.02
    n_diff = n * (nreads - 1)
    expected = false_jump_rate() * n_diff
    assert fit.jumps.sum() <= 1.5 * expected + 4 * np.sqrt(expected)
