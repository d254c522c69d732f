"""The compiled ramp kernel (numba) gives the numpy kernel's numbers, for any number of threads.

The two kernels do the same floating-point operations in the same order except that numpy may
evaluate ``expm1``/``log1p`` with vectorised routines that differ from the C library's by an ulp,
and the compiled kernel builds its ``expm1(k log r)`` table from exact anchors by the addition
formula (a few ulps).  A slope is a sum that cancels when it is small compared with its noise,
so its rounding is relative to the larger of the slope and its error bar: that is the scale of
the 1e-12 tolerance.  Error bars are compared to 1e-12 relative, jump flags and counts exactly.
"""
import inspect
import math
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reprocess import ramps
from reprocess.ramps import fit_ramps

from .conftest import HAVE_NUMBA

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")

DT, GAIN = 0.131072, 7.1
RTOL = 1e-12
FIELDS = ("slope", "slope_err", "jumps", "n_reads", "n_segments")


def random_cube(rng, *, nreads, npix, read_noise, gain=GAIN, rate_max=3000.0, cr_frac=0.1,
                nan_frac=0.0, bad_frac=0.0, sat_frac=0.0, dtype="f8"):
    """Ramps (NREADS, 1, NPIX) with Poisson + read noise, jumps, NaN reads, bad and saturated reads.

    Returns the reads and the ``good`` mask (None when no read is masked).
    """
    rates = rng.uniform(0.0, rate_max, npix)
    electrons = rng.poisson(rates * DT * gain, size=(nreads, npix))
    q = np.cumsum(electrons, axis=0) / gain + 1000.0 + rng.normal(0.0, 1.0, (nreads, npix)) * read_noise
    hit = rng.random(npix) < cr_frac
    at = rng.integers(1, max(nreads, 2), npix)
    amp = rng.uniform(50.0, 5000.0, npix)
    q += np.where(hit & (np.arange(nreads)[:, None] >= at), amp, 0.0)
    if np.dtype(dtype).kind in "iu":
        q = np.clip(np.round(q), 0, np.iinfo(dtype).max)
    reads = q.astype(dtype)
    if nan_frac and reads.dtype.kind == "f":
        reads[rng.random(reads.shape) < nan_frac] = np.nan
    good = None
    if bad_frac or sat_frac:
        good = rng.random(reads.shape) >= bad_frac
        saturated = rng.random(npix) < sat_frac
        first = rng.integers(0, nreads, npix)
        good &= ~(saturated & (np.arange(nreads)[:, None] >= first))
        good = good[:, None, :]
    return reads[:, None, :], good


def assert_same_fit(a, b):
    """``a`` and ``b`` agree: flags and counts exactly, slopes and errors to RTOL (see module doc)."""
    for name in ("jumps", "n_reads", "n_segments"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("slope", "slope_err"):
        np.testing.assert_array_equal(np.isnan(getattr(a, name)), np.isnan(getattr(b, name)), err_msg=name)
    ok = np.isfinite(b.slope)
    scale = np.maximum(np.abs(b.slope), np.nan_to_num(b.slope_err))[ok]
    assert np.all(np.abs(a.slope - b.slope)[ok] <= RTOL * scale), np.max(np.abs(a.slope - b.slope)[ok] / scale)
    ok = np.isfinite(b.slope_err)
    np.testing.assert_allclose(a.slope_err[ok], b.slope_err[ok], rtol=RTOL, atol=0)


def both(reads, **kw):
    return (fit_ramps(reads, kernel="numba", **kw), fit_ramps(reads, kernel="numpy", **kw))


@pytest.mark.parametrize("read_noise", [20.0, 2.0])
def test_ge_ramps_with_jumps_agree(read_noise):
    """10^4 Ge-like 32-read ramps, 10 % with a jump, in both noise regimes."""
    reads, _ = random_cube(np.random.default_rng(3), nreads=32, npix=10_000, read_noise=read_noise,
                           dtype="f4")
    a, b = both(reads, read_time=DT, gain=GAIN, read_noise=read_noise)
    assert a.jumps.sum() >= 900                       # the jumps are there, and flagged
    assert_same_fit(a, b)


def test_nan_bad_saturated_and_short_ramps_agree():
    rng = np.random.default_rng(4)
    for nreads in (2, 3, 4, 5, 24, 32, 33, 34, 40, 80):
        reads, good = random_cube(rng, nreads=nreads, npix=2000, read_noise=15.0, nan_frac=0.03,
                                  bad_frac=0.03, sat_frac=0.2)
        for min_reads in (1, 2, 4):
            a, b = both(reads, read_time=DT, gain=GAIN, read_noise=15.0, good=good,
                        min_segment_reads=min_reads)
            assert_same_fit(a, b)


def test_a_single_read_is_refused_by_both():
    for kernel in ("numba", "numpy"):
        with pytest.raises(ValueError, match="at least 2 reads"):
            fit_ramps(np.zeros((1, 2, 2)), read_time=DT, gain=GAIN, read_noise=1.0, kernel=kernel)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), nreads=st.integers(2, 80), npix=st.integers(1, 40),
       read_noise=st.one_of(st.just(0.0), st.floats(0.1, 200.0)), gain=st.floats(0.5, 20.0),
       excess=st.one_of(st.just(0.0), st.floats(0.0, 1e4, allow_subnormal=False)), rate_max=st.floats(0.0, 1e5),
       cr_frac=st.floats(0, 1), nan_frac=st.floats(0, 0.3), bad_frac=st.floats(0, 0.3),
       sat_frac=st.floats(0, 1), dtype=st.sampled_from(["f8", "f4", "i4", "u2", "i2"]),
       threshold=st.floats(2.0, 10.0), min_reads=st.integers(1, 6), max_jumps=st.integers(0, 25))
def test_kernels_agree_on_any_ramps(seed, nreads, npix, read_noise, gain, excess, rate_max, cr_frac,
                                    nan_frac, bad_frac, sat_frac, dtype, threshold, min_reads, max_jumps):
    """Property: whatever the ramps, noise, masks, dtype and options, the two kernels agree."""
    reads, good = random_cube(np.random.default_rng(seed), nreads=nreads, npix=npix,
                              read_noise=read_noise, gain=gain, rate_max=rate_max, cr_frac=cr_frac,
                              nan_frac=nan_frac, bad_frac=bad_frac, sat_frac=sat_frac, dtype=dtype)
    a, b = both(reads, read_time=DT, gain=gain, read_noise=read_noise, excess_noise=excess, good=good,
                threshold=threshold, min_segment_reads=min_reads, max_jumps=max_jumps)
    assert_same_fit(a, b)


def test_noise_maps_per_pixel_agree():
    rng = np.random.default_rng(5)
    reads, good = random_cube(rng, nreads=24, npix=3000, read_noise=10.0, bad_frac=0.01)
    maps = {"gain": rng.uniform(3, 10, (1, 3000)), "read_noise": rng.uniform(0, 40, (1, 3000)),
            "excess_noise": rng.uniform(0, 500, (1, 3000))}
    assert_same_fit(*both(reads, read_time=DT, good=good, **maps))


def test_big_endian_and_strided_reads_agree():
    """FITS data arrive big-endian; a slice of a cube is not contiguous."""
    reads, _ = random_cube(np.random.default_rng(6), nreads=20, npix=500, read_noise=10.0)
    swapped = reads.astype(">f8")
    strided = np.repeat(reads, 2, axis=2)[:, :, ::2]
    for r in (swapped, strided):
        assert_same_fit(*both(r, read_time=DT, gain=GAIN, read_noise=10.0))


def test_same_output_for_any_thread_count(tmp_path):
    """1 thread, all threads, and (in a fresh process) 3 threads on this machine: bit-identical."""
    from reprocess.ramp_kernel_numba import max_threads
    reads, good = random_cube(np.random.default_rng(8), nreads=32, npix=1001, read_noise=20.0,
                              bad_frac=0.01, sat_frac=0.1)
    kw = {"read_time": DT, "gain": GAIN, "read_noise": 20.0, "good": good, "kernel": "numba"}
    one = fit_ramps(reads, threads=1, **kw)
    for other in (fit_ramps(reads, threads=max_threads(), **kw),
                  _fit_in_process_with_3_threads(reads, good, tmp_path)):
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name)


def _fit_in_process_with_3_threads(reads, good, folder):
    np.savez(folder / "in.npz", reads=reads, good=good)
    code = textwrap.dedent(f"""
        import numpy as np
        from reprocess.ramps import fit_ramps
        from reprocess.ramp_kernel_numba import max_threads
        assert max_threads() == 3
        z = np.load({str(folder / "in.npz")!r})
        fit = fit_ramps(z["reads"], read_time={DT!r}, gain={GAIN!r}, read_noise=20.0, good=z["good"],
                        kernel="numba", threads=3)
        np.savez({str(folder / "out.npz")!r}, **{{k: getattr(fit, k) for k in {FIELDS!r}}})
    """)
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_NUM_THREADS="3"), check=True)
    z = np.load(folder / "out.npz")
    return ramps.RampFit(*(z[k] for k in FIELDS))


def test_threads_out_of_range_raise():
    from reprocess.ramp_kernel_numba import max_threads
    reads = np.zeros((4, 1, 3))
    for bad in (0, max_threads() + 1):
        with pytest.raises(ValueError, match="threads must be"):
            fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=1.0, kernel="numba", threads=bad)


def test_concurrent_calls_from_python_threads():
    """Launches are serialised (numba's workqueue layer must not be entered twice at once)."""
    reads, _ = random_cube(np.random.default_rng(9), nreads=32, npix=4000, read_noise=20.0)
    kw = {"read_time": DT, "gain": GAIN, "read_noise": 20.0, "kernel": "numba"}
    serial = fit_ramps(reads, **kw)
    results = [None] * 4

    def run(i):
        results[i] = fit_ramps(reads, **kw)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for r in results:
        np.testing.assert_array_equal(r.slope, serial.slope)


def _fit_slopes(reads):
    return fit_ramps(reads, read_time=DT, gain=GAIN, read_noise=20.0, kernel="numba").slope


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method: Linux")
def test_forked_worker_after_the_parent_used_the_kernel():
    """reprocess_many forks its workers: with GNU OpenMP as numba's threading layer they would abort."""
    import multiprocessing
    reads, _ = random_cube(np.random.default_rng(10), nreads=16, npix=300, read_noise=20.0)
    parent = _fit_slopes(reads)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        child = pool.submit(_fit_slopes, reads).result(timeout=120)
    np.testing.assert_array_equal(child, parent)


def test_numpy_fallback_when_numba_is_missing():
    """With numba unimportable the default is the numpy kernel, and asking for numba says why not."""
    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None                   # import numba -> ImportError
        import numpy as np
        from reprocess.ramps import default_kernel, fit_ramps
        assert default_kernel() == "numpy", default_kernel()
        fit = fit_ramps(np.arange(8.0)[:, None, None] * np.ones((1, 2, 2)), read_time=1.0, gain=1.0,
                        read_noise=1.0)
        assert np.allclose(fit.slope, 1.0)
        try:
            fit_ramps(np.zeros((4, 1, 1)), read_time=1.0, gain=1.0, read_noise=1.0, kernel="numba")
        except ValueError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs numba" in out.stdout and "fast" in out.stdout


def test_default_is_numba_when_importable():
    assert ramps.default_kernel() == "numba"


def test_unknown_kernel_raises():
    with pytest.raises(ValueError, match="kernel must be one of"):
        fit_ramps(np.zeros((4, 1, 1)), read_time=DT, gain=GAIN, read_noise=1.0, kernel="cuda")


# ----------------------------------------------------------------------------- the sorting network

def test_sort_network_sorts():
    from reprocess._sort32_numba import sort32
    rng = np.random.default_rng(11)
    for _ in range(300):
        x = rng.normal(size=32)
        x[rng.random(32) < 0.2] = np.inf                     # padding
        x[rng.random(32) < 0.2] = 0.5                        # ties
        y = x.copy()
        sort32(y)
        np.testing.assert_array_equal(y, np.sort(x))


def test_sort_network_body_is_the_generated_one():
    """sort32's unrolled body is network_source(32), verbatim (regenerate it, never hand-edit)."""
    from reprocess import _sort32_numba as net
    src = inspect.getsource(net.sort32.py_func)
    body = src.split("# --- generated: network_source(32) ---\n")[1].split("\n    # --- end of generated")[0]
    assert body == net.network_source(32)
    assert len(net.batcher_comparators(32)) == 191


def test_expm1_table_is_within_a_few_ulps():
    """The compiled kernel's table of expm1(k log r), built from one expm1 by the addition formula.

    Each entry is at most 7 additions deep (k <= 79) and each adds at most ~1.5 ulp (no
    cancellation): 10 ulps is the bound tested, over read- to Poisson-dominated noise.
    """
    from reprocess.ramp_kernel_numba import _weight_table
    table = np.empty(80)
    for p in np.geomspace(1e-6, 1e8, 300):
        s2 = 400.0
        _weight_table(table, 79, p, s2)
        eps = p / s2
        logr = -math.log1p(0.5 * eps + math.sqrt(eps * (1.0 + 0.25 * eps)))
        exact = np.array([math.expm1(k * logr) for k in range(1, 80)])
        np.testing.assert_allclose(table[1:], exact, rtol=10 * np.finfo(float).eps, atol=0)


def test_dask_workers_give_the_kernel_one_thread():
    """reprocess.batch's local cluster: the workers are the parallelism, the kernel runs on one
    thread per task; starting the cluster leaves this process's environment (and so numba's
    thread pool, sized once from NUMBA_NUM_THREADS) as it was."""
    import numba
    from distributed import Client

    from reprocess.batch import _local_cluster, _one_kernel_thread

    def kernel_threads():
        _one_kernel_thread()
        return numba.get_num_threads()

    before = dict(os.environ)
    with _local_cluster(1) as cluster, Client(cluster) as client:
        assert dict(os.environ) == before
        assert client.submit(kernel_threads).result() == 1
