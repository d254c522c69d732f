"""The ramp kernels side by side on 10^5 Ge ramps: compiled (1 and 2 threads), numpy, stcal.

What is compared (all on the same float32 cube, in one process, interleaved)
---------------------------------------------------------------------------
* ``numba 1t`` / ``numba 2t``: :func:`reprocess.ramps.fit_ramps` with ``kernel="numba"`` and
  ``threads=1`` / ``2`` (the compiled per-pixel kernel, :mod:`reprocess.ramp_kernel_numba`);
* ``numpy``: the same with ``kernel="numpy"`` (the vectorised kernel, the fallback);
* ``stcal 2pt+OLS_C``: stcal's two-point jump step (JWST defaults) + OLS_C, one process
  (``max_cores="none"``), and ``stcal 2pt+OLS_C all``: the same with ``max_cores="all"``
  (stcal's own multiprocessing on every core);
* ``stcal LIKELY``: stcal's likelihood fit with its own jump finding.
The stcal runners and the quality metrics are those of ``bench_ramps.py``.

Cubes (anchors.md 1.7): 10^5 pixels of 32 reads every 0.131072 s, gain 7.1 e-/DN, rates
log-uniform 10-3000 DN/s, 3 % of pixels with one cosmic ray of 200-5000 DN, laid out as one
(32, 32, 3125) image (wide rows: stcal's jump step loops over rows); read noise 20 DN per read
(read-noise dominated: a difference's shot variance is 0.2-55 DN^2 against 800 DN^2) and 2 DN
(Poisson dominated: 8 DN^2 of read noise per difference).

How it is measured
------------------
One process per cube.  The cube is simulated (``bench_ramps.simulate``), every code runs once
to warm up (numba loads its cached machine code -- or compiles it -- and stcal imports and
allocates), then ``--reps`` rounds run every code once each, in turn, so that a slow spell of
this shared machine hits all codes alike.  Inputs are rebuilt before each timed call (stcal
writes jump flags into its groupdq in place).  Wall time is ``time.perf_counter`` around the
call; the figure is the median over rounds (min-max shown), throughput = pixels x reads / wall,
and the ratios are between those medians.  The process's CPU time is shown too: on a machine
that other jobs keep busy it is the steadier figure for the one-thread codes.  Quality (``bench_ramps.quality``) is from the
first round: var/bound = mean (slope - truth)^2 / Cramer-Rao bound over pixels without a cosmic
ray, pulls = (slope - truth) / slope_err (median, 1.4826 MAD).  The two kernels' agreement is
printed too (max |numba - numpy| / max(|slope|, slope_err), jump flags that differ).

``--first-call`` also measures what a new process pays on its first call of the compiled
kernel: with an empty numba cache (compilation) and with the cache just written (loading).

Run (about 2 minutes on 2 cores; stcal is in the bench extra)::

    pip install -e ".[test,bench]"
    python benchmarks/ramp_kernel.py                 # both cubes, 5 rounds, + first-call cost
    python benchmarks/ramp_kernel.py --reps 3 --cases rn20 --no-first-call
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import bench_ramps as br  # this folder's (the script's folder is on sys.path): stcal runners, metrics
import numpy as np

CASES = {f"rn{rn:g}": br.Case(f"rn{rn:g}", 32, 32, 3125, 0.131072, 7.1, rn, (10.0, 3000.0), note)
         for rn, note in ((20.0, "read-noise dominated"), (2.0, "Poisson dominated"))}
CODES = {  # name: (label, runner, bench_ramps code for the inputs and the quality prediction)
    "numba1": ("numba 1t", lambda c, i: br.run_ours(c, i, kernel="numba", threads=1), "ours"),
    "numba2": ("numba 2t", lambda c, i: br.run_ours(c, i, kernel="numba", threads=2), "ours"),
    "numpy": ("numpy", lambda c, i: br.run_ours(c, i, kernel="numpy"), "ours"),
    "stcal": ("stcal 2pt+OLS_C", br.run_stcal, "stcal"),
    "stcal_all": ("stcal 2pt+OLS_C all", lambda c, i: br.run_stcal(c, i, max_cores="all"), "stcal"),
    "likely": ("stcal LIKELY", br.run_likely, "likely"),
}
GOALS = (("numba2", "stcal", 5.0), ("numba2", "likely", 20.0))


def fresh_inputs(code: str, case: br.Case, cube: np.ndarray) -> dict:
    """The code's inputs from a copy of the cube (nothing carries over between calls)."""
    return br.prepare(CODES[code][2], case, cube.copy())


def measure(case: br.Case, codes: list[str], reps: int, seed: int) -> dict:
    cube, truth = br.simulate(case, seed)
    for code in codes:                                         # warm-up, not timed
        CODES[code][1](case, fresh_inputs(code, case, cube))
    walls = {code: [] for code in codes}
    cpus = {code: [] for code in codes}
    outputs = {}
    for rnd in range(reps):
        for code in codes:
            inp = fresh_inputs(code, case, cube)
            c0 = time.process_time()
            t0 = time.perf_counter()
            out = CODES[code][1](case, inp)
            walls[code].append(time.perf_counter() - t0)
            cpus[code].append(time.process_time() - c0)
            if rnd == 0:
                outputs[code] = out
    res = {}
    for code in codes:
        w = statistics.median(walls[code])
        slope, err, jumps = outputs[code]
        res[code] = {"wall": w, "min": min(walls[code]), "max": max(walls[code]),
                     "cpu": statistics.median(cpus[code]),
                     "tput": case.ny * case.nx * case.nreads / 1e6 / w,
                     "quality": br.quality(CODES[code][2], case, truth, slope, err, jumps)}
    if "numba1" in outputs and "numpy" in outputs:
        (a, _, ja), (b, eb, jb) = outputs["numba1"], outputs["numpy"]
        scale = np.maximum(np.abs(b), eb)
        res["agreement"] = (float(np.nanmax(np.abs(a - b) / scale)), int((ja != jb).sum()))
    return res


def print_case(case: br.Case, res: dict, reps: int) -> None:
    print(f"\n=== {case.name}: {case.note}; {case.ny * case.nx} pixels x {case.nreads} reads, "
          f"read noise {case.read_noise:g} DN/read, {reps} rounds")
    codes = [c for c in CODES if c in res]
    base = {b: res[b]["tput"] for b in ("stcal", "likely", "numpy") if b in res}
    head = "".join(f"{'x ' + CODES[b][0]:>22}" for b in base)
    print(f"{'code':<22}{'wall ms (min-max)':>24}{'cpu ms':>8}{'Mpix*reads/s':>14}{head}")
    for code in codes:
        r = res[code]
        span = f"{1e3 * r['wall']:.1f} ({1e3 * r['min']:.1f}-{1e3 * r['max']:.1f})"
        ratios = "".join(f"{r['tput'] / t:>22.2f}" for t in base.values())
        print(f"{CODES[code][0]:<22}{span:>24}{1e3 * r['cpu']:>8.1f}{r['tput']:>14.2f}{ratios}")
    print("(throughput and ratios from wall time; cpu = this process's CPU time, all its threads, "
          "not stcal's worker processes)")
    print(f"\n{'code':<22}{'var/bound':>10}{'pull clean med/sig':>21}{'pull all med/sig':>19}"
          f"{'complete':>10}{'false/diff':>12}{'pred':>10}")
    for code in codes:
        q = res[code]["quality"]
        pc, pa = q["pull_clean"], q["pull_all"]
        print(f"{CODES[code][0]:<22}{q['var_bound']:>10.4f}{pc[0]:>+10.4f} / {pc[1]:<7.4f}"
              f"{pa[0]:>+9.4f} / {pa[1]:<7.4f}{q['completeness']:>10.4f}{q['false_per_diff']:>12.1e}"
              f"{q['pred_per_diff']:>10.1e}")
    if "agreement" in res:
        dmax, nflag = res["agreement"]
        print(f"\nnumba vs numpy: max |slope difference| / max(|slope|, slope_err) = {dmax:.1e}; "
              f"jump flags that differ: {nflag}")
    for ours, peer, goal in GOALS:
        if ours in res and peer in res:
            ratio = res[ours]["tput"] / res[peer]["tput"]
            print(f"goal: {CODES[ours][0]} / {CODES[peer][0]} throughput = {ratio:.2f} (goal >= {goal:g}): "
                  f"{'met' if ratio >= goal else 'NOT met'}")
    for code in ("numba1", "numba2"):
        if code in res:
            q = res[code]["quality"]
            ok = q["var_bound"] <= 1.01 and 0.98 <= q["pull_clean"][1] <= 1.02
            print(f"goal: {CODES[code][0]} var/bound {q['var_bound']:.4f} <= 1.01 and clean pull spread "
                  f"{q['pull_clean'][1]:.4f} in 0.98-1.02: {'met' if ok else 'NOT met'}")
    if "numba1" in res and "numpy" in res:
        gain = res["numba1"]["tput"] / res["numpy"]["tput"]
        print(f"default kernel: {'numba' if gain > 1 else 'numpy'} (numba on one thread is x{gain:.2f} "
              f"the numpy kernel's throughput)")


FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from reprocess.ramps import fit_ramps
t1 = time.perf_counter()
fit_ramps(np.zeros((32, 1, 8), dtype=np.{dtype}), read_time=0.131072, gain=7.1, read_noise=20.0,
          kernel="numba")
t2 = time.perf_counter()
fit_ramps(np.zeros((32, 1, 8), dtype=np.{dtype}), read_time=0.131072, gain=7.1, read_noise=20.0,
          kernel="numba")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def first_call() -> None:
    """First-call cost in fresh processes: empty numba cache (compile), then warm cache (load)."""
    print("\n=== first call of the compiled kernel in a fresh process (import; first call; second call)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for dtype in ("float32", "float64"):
            for label in ("empty cache (compiles)", "cache written (loads)"):
                out = subprocess.run([sys.executable, "-c", FIRST_CALL.format(dtype=dtype)], env=env,
                                     capture_output=True, text=True, check=True).stdout.split()
                imp, first, second = (float(x) for x in out)
                print(f"{dtype:<8} {label:<24} import {imp:.2f} s; first call {first:.2f} s; "
                      f"second call {1e3 * second:.2f} ms")


def print_header(args) -> None:
    import numba
    import scipy
    import stcal
    print(f"ramp_kernel  {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
          f"{os.cpu_count()} cores  Python {platform.python_version()}  numpy {np.__version__}  "
          f"scipy {scipy.__version__}  numba {numba.__version__}  stcal {stcal.__version__}")
    print(f"seed {args.seed}; wall = jump detection + slope fit (median over rounds, codes interleaved); "
          f"throughput ratios between medians; numba threading layer chosen at the first launch")
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine: "
          "ratios from one run are what to quote)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (median; default 5, at least 3)")
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--codes", nargs="+", choices=list(CODES), default=list(CODES))
    ap.add_argument("--no-first-call", action="store_true", help="skip the first-call measurement")
    args = ap.parse_args(argv)
    if args.reps < 3:
        ap.error("--reps must be at least 3 (median of >= 3 runs)")
    print_header(args)
    for name in args.cases:
        res = measure(CASES[name], args.codes, args.reps, args.seed)
        print_case(CASES[name], res, args.reps)
        sys.stdout.flush()
    if not args.no_first_call:
        first_call()
    import numba
    print(f"\nnumba threading layer: {numba.threading_layer()}; load average after: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
