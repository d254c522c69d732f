"""Side-by-side benchmark: our jump detection + ramp fit against stcal's.

What is compared
----------------
* ``ours``: :func:`reprocess.ramps.fit_ramps` (iterative GLS jump finding at
  4.5 sigma + closed-form GLS slope), given the float32 cube, with its default
  kernel (the compiled one when numba is installed, on all cores; warmed up
  before the measurement).  ``benchmarks/ramp_kernel.py`` compares the kernels
  and thread counts on 10^5 Ge ramps.
* ``ours-f64``: the same, given the cube as float64 -- what
  :func:`reprocess.sloper.slope_dce` passes after linearisation.  Results are
  identical to ``ours`` (float32 -> float64 is exact); only time/memory differ.
* ``stcal OLS_C``: ``stcal.jump.jump.detect_jumps_data`` (two-point
  difference, JWST defaults: 4 sigma, 4-neighbour flagging for 10-1000 sigma
  jumps, no snowballs/showers) followed by
  ``stcal.ramp_fitting.ramp_fit.ramp_fit_data`` with algorithm "OLS_C" on the
  jump-flagged group DQ, save_opt False, max_cores "none".
* ``stcal LIKELY`` (128x128 cube only; too slow for the scan map): ramp_fit_data
  with algorithm "LIKELY", which finds jumps itself (likelihood test at its
  default 4.5 sigma); no separate two-point jump step.

Both codes see the SAME simulated cube: every run regenerates it from the seed.

Cubes
-----
* ``scan``: 1616 DCEs of 32 reads x 32x32 pixels (a MIPS 70 um scan map),
  reads every 0.131072 s, gain 7.1 e-/DN, read noise 20 DN per read, rates
  log-uniform 10-3000 DN/s.  Pixels are independent, so the 1616 DCEs are
  laid side by side into ONE image of (32 reads, 32, 1616*32) for both codes.
  stcal's two-point jump step loops over image rows, so this wide layout is
  the fair one: stacked the other way, (32, 1616*32, 32), its jump step takes
  ~3x longer (``--scan-layout tall``); ours does not care.  For stcal's
  neighbour flagging, the last column of one DCE becomes a neighbour of the
  first column of the next -- a handful of extra flags, counted as false.
* ``128x128x50``: one 128x128 cube of 50 reads every 10.737 s, gain 2 e-/DN,
  read noise 7.07 DN per read (10 DN CDS), rates log-uniform 0.05-50 DN/s
  (the anchors.md 1.6 setup).

Simulation: bias 1000 DN; Poisson electrons accumulated read to read (read 0 at
t = 0 holds no charge); Gaussian read noise per read; 3 % of pixels get one
cosmic ray at a uniformly drawn read k in 1..NREADS-1 (a jump between reads
k-1 and k) of log-uniform 200-5000 DN.  No saturation, no nonlinearity.

How it is measured
------------------
Each (cube, code, repetition) runs in a fresh subprocess of this script
(``--worker``).  The worker simulates the cube, builds the code's inputs
(stcal: 4-D float32 cube, zeroed uint8 groupdq and uint32 pixeldq, gain and
CDS read-noise maps), then resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``), reads the current RSS and times jump detection +
fit with ``time.perf_counter``.  Peak memory = ``ru_maxrss`` after the fit
minus the RSS just before it, i.e. what the fit itself added on top of its
inputs.  Wall time is the median over repetitions (min-max shown too).
Throughput = pixels x reads / wall time.

Quality (from the first repetition; the cube is the same in all of them):
* var/bound: mean over pixels without a cosmic ray of (slope - true rate)^2
  divided by the Cramer-Rao bound of that pixel (GLS on the differences with
  their tridiagonal covariance at the true rate): 1 is the best possible;
* pull = (slope - true rate) / slope_err: median and robust spread
  (1.4826 x MAD), over pixels without a cosmic ray and over all pixels;
* completeness: fraction of cosmic rays flagged at exactly the right read;
* false flags per difference: flags where there is no true jump, divided by
  pixels x (NREADS-1); also excluding flags 4-adjacent (same read) to a true
  jump (stcal's neighbour flagging is deliberate, not a false alarm);
  "predicted" is erfc(threshold/sqrt 2) -- 4.5 sigma for ours and LIKELY,
  4 sigma for stcal's two-point step;
* false-flagged pixels: fraction of pixels without a cosmic ray that carry
  any flag (and the same excluding the 4 neighbours of cosmic-ray pixels),
  next to the prediction 1 - (1 - p)^(NREADS-1).

Run (about 3 minutes on 2 cores)::

    /tmp/venv/bin/python benchmarks/bench_ramps.py            # full, 3 reps
    /tmp/venv/bin/python benchmarks/bench_ramps.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

BIAS_DN = 1000.0
CR_FRACTION = 0.03
CR_AMP_DN = (200.0, 5000.0)
# JWST data-quality bits (stcal takes them as a dict)
DQFLAGS = {"GOOD": 0, "DO_NOT_USE": 1, "SATURATED": 2, "JUMP_DET": 4, "PERSISTENCE": 32,
           "CHARGELOSS": 128, "NO_GAIN_VALUE": 2**19, "UNRELIABLE_SLOPE": 2**24,
           "REFERENCE_PIXEL": 2**31}
STCAL_THRESHOLD = 4.0   # JWST default rejection_threshold of the two-point jump step
LIKELY_THRESHOLD = 4.5  # stcal LIKELY's default (threshold_one_omit = 20.25 = 4.5**2)


@dataclass(frozen=True)
class Case:
    name: str
    nreads: int
    ny: int
    nx: int
    read_time: float     # s between reads
    gain: float          # e-/DN
    read_noise: float    # DN, ONE read
    rate_range: tuple    # DN/s, log-uniform
    note: str = ""


def make_cases(quick: bool, scan_layout: str = "wide") -> dict[str, Case]:
    ndce = 64 if quick else 1616
    ny, nx = (32, 32 * ndce) if scan_layout == "wide" else (32 * ndce, 32)
    return {
        "scan": Case("scan", 32, ny, nx, 0.131072, 7.1, 20.0, (10.0, 3000.0),
                     f"{ndce} DCEs of 32 reads x 32x32, laid out as one (32, {ny}, {nx}) image"),
        "128x128x50": Case("128x128x50", 50, 128, 128, 10.737, 2.0, 10.0 / math.sqrt(2),
                           (0.05, 50.0), "one 128x128 cube of 50 reads (anchors.md 1.6 setup)"),
    }


CODES = {"ours": "ours (float32 in)", "ours-f64": "ours (float64 in)",
         "stcal": "stcal 2pt+OLS_C", "likely": "stcal LIKELY"}


def codes_for(case: Case) -> list[str]:
    codes = ["ours", "ours-f64", "stcal"]
    if case.name == "128x128x50":
        codes.append("likely")
    return codes


# ----------------------------------------------------------------------------- simulation

def simulate(case: Case, seed: int):
    """Return the float32 cube (NREADS, NY, NX) in DN and the truth.

    Built read by read so that generation never holds more than the cube plus a
    few 2-D arrays.
    """
    rng = np.random.default_rng(seed)
    shape = (case.ny, case.nx)
    lo, hi = np.log(case.rate_range[0]), np.log(case.rate_range[1])
    rate = np.exp(rng.uniform(lo, hi, shape))                       # DN/s
    has_cr = rng.random(shape) < CR_FRACTION
    cr_read = np.where(has_cr, rng.integers(1, case.nreads, shape), -1)
    cr_amp = np.where(has_cr, np.exp(rng.uniform(*np.log(CR_AMP_DN), shape)), 0.0)

    cube = np.empty((case.nreads,) + shape, dtype=np.float32)
    electrons = np.zeros(shape)
    lam = rate * case.gain * case.read_time                          # e- per read interval
    for k in range(case.nreads):
        if k > 0:
            electrons += rng.poisson(lam)
        signal = electrons / case.gain + np.where((cr_read >= 1) & (cr_read <= k), cr_amp, 0.0)
        cube[k] = BIAS_DN + signal + rng.normal(0.0, case.read_noise, shape)
    return cube, {"rate": rate, "cr_read": cr_read}


# ----------------------------------------------------------------------------- the codes

def prepare(code: str, case: Case, cube: np.ndarray) -> dict:
    """Inputs as each code takes them (built before the measurement starts)."""
    if code == "ours":
        return {"reads": cube}
    if code == "ours-f64":
        return {"reads": cube.astype(np.float64)}
    shape = cube.shape[1:]
    return {"data": cube[np.newaxis],                                   # (1, ngroups, ny, nx), a view
            "gdq": np.zeros((1,) + cube.shape, dtype=np.uint8),
            "pdq": np.zeros(shape, dtype=np.uint32),
            "gain": np.full(shape, case.gain, dtype=np.float32),
            "rn_cds": np.full(shape, case.read_noise * math.sqrt(2), dtype=np.float32),
            "dark": np.zeros(shape, dtype=np.float32)}


def input_mb(inputs: dict) -> float:
    return sum(a.nbytes for a in inputs.values()) / 2**20


def run_ours(case: Case, inp: dict, **kw):
    """``reprocess.ramps.fit_ramps``; ``kw`` picks the kernel and threads (default: its defaults)."""
    from reprocess.ramps import fit_ramps
    fit = fit_ramps(inp["reads"], read_time=case.read_time, gain=case.gain,
                    read_noise=case.read_noise, **kw)
    return fit.slope, fit.slope_err, fit.jumps


def warm_up_ours() -> None:
    """First call of the compiled kernel: loads (or compiles) it, outside any measurement."""
    from reprocess.ramps import fit_ramps
    for dtype in (np.float32, np.float64):
        fit_ramps(np.zeros((4, 1, 2), dtype=dtype), read_time=1.0, gain=1.0, read_noise=1.0)


def _ramp_data(case: Case, inp: dict, gdq: np.ndarray):
    from stcal.ramp_fitting.ramp_fit_class import RampData
    rd = RampData()
    rd.set_arrays(inp["data"], gdq, inp["pdq"], inp["dark"])
    rd.set_meta(name="MIPS", frame_time=case.read_time, group_time=case.read_time,
                groupgap=0, nframes=1, drop_frames1=None)   # not "MIRI": no group discarding
    rd.set_dqflags(DQFLAGS)
    return rd


def run_stcal(case: Case, inp: dict, max_cores: str = "none"):
    """Two-point-difference jump detection (JWST defaults), then OLS_C on the flagged gdq.

    ``max_cores`` ("none", "half", "all") is stcal's own multiprocessing, for both steps.
    """
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    jd = JumpData(gain2d=inp["gain"], rnoise2d=inp["rn_cds"], dqflags=DQFLAGS)
    # Without a datamodel JumpData leaves these unset; the values are what it sets for a
    # JWST model without read_pattern (diffs in DN per group, 2 reads per difference).
    jd.nframes = 1
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2 * jd.nframes
    jd.max_cores = max_cores                 # default None would crash compute_num_cores
    jd.init_arrays_from_arrays(inp["data"], inp["gdq"], inp["pdq"])
    gdq, pdq, _, _ = detect_jumps_data(jd)
    rd = _ramp_data(case, {**inp, "pdq": pdq}, gdq)
    image, _, _ = ramp_fit_data(rd, False, inp["rn_cds"].copy(), inp["gain"], "OLS_C",
                                "optimal", max_cores)   # copy: readnoise_2d is scaled in place
    return image["slope"], image["err"], (gdq[0] & DQFLAGS["JUMP_DET"]) != 0


def run_likely(case: Case, inp: dict):
    """stcal LIKELY with its own likelihood jump finding (flags land in gdq in place)."""
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    gdq = inp["gdq"]
    rd = _ramp_data(case, inp, gdq)
    image, _, _ = ramp_fit_data(rd, False, inp["rn_cds"].copy(), inp["gain"], "LIKELY",
                                "optimal", "none")
    return image["slope"], image["err"], (gdq[0] & DQFLAGS["JUMP_DET"]) != 0


RUNNERS = {"ours": run_ours, "ours-f64": run_ours, "stcal": run_stcal, "likely": run_likely}
PREDICTED_P = {"ours": math.erfc(4.5 / math.sqrt(2)), "ours-f64": math.erfc(4.5 / math.sqrt(2)),
               "stcal": math.erfc(STCAL_THRESHOLD / math.sqrt(2)),
               "likely": math.erfc(LIKELY_THRESHOLD / math.sqrt(2))}


# ----------------------------------------------------------------------------- measurement

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def robust(x: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x MAD."""
    med = float(np.median(x))
    return med, float(1.4826 * np.median(np.abs(x - med)))


def four_neighbours(mask: np.ndarray) -> np.ndarray:
    """Pixels 4-adjacent (along the last two axes) to a True pixel, excluding the pixel itself."""
    out = np.zeros_like(mask)
    out[..., 1:, :] |= mask[..., :-1, :]
    out[..., :-1, :] |= mask[..., 1:, :]
    out[..., :, 1:] |= mask[..., :, :-1]
    out[..., :, :-1] |= mask[..., :, 1:]
    return out & ~mask


def quality(code: str, case: Case, truth: dict, slope, err, jumps) -> dict:
    rate, cr_read = truth["rate"], truth["cr_read"]
    has_cr = cr_read >= 0
    slope = np.asarray(slope, dtype=float)
    err = np.asarray(err, dtype=float)
    ok = np.isfinite(slope) & np.isfinite(err) & (err > 0)
    pull = np.where(ok, (slope - rate) / np.where(ok, err, 1.0), np.nan)

    true_jump = np.zeros(jumps.shape, dtype=bool)
    yy, xx = np.nonzero(has_cr)
    true_jump[cr_read[yy, xx], yy, xx] = True
    false = jumps & ~true_jump
    near = four_neighbours(true_jump)                 # same read, 4-neighbour of a true jump
    ndiff = jumps[1:].size                            # pixels x (NREADS - 1)
    clean_pix = ~has_cr
    far_pix = clean_pix & ~four_neighbours(has_cr)
    flagged_pix = false.any(axis=0)
    p = PREDICTED_P[code]
    # Cramer-Rao bound per pixel: GLS on the differences with their tridiagonal covariance
    # (closed form of reprocess.ramps.gls_weights, checked against explicit inversion in the tests)
    from reprocess.ramps import gls_weights
    n = case.nreads - 1
    pos = np.arange(1, n + 1).reshape(n, 1, 1)
    w = gls_weights(pos, np.full(pos.shape, n), rate * case.read_time / case.gain, case.read_noise ** 2)
    bound = 1.0 / (w.sum(axis=0) * case.read_time ** 2)
    sel = ok & clean_pix
    return {
        "var_bound": float(np.mean((slope[sel] - rate[sel]) ** 2 / bound[sel])),
        "finite": float(ok.mean()),
        "pull_clean": robust(pull[ok & clean_pix]),
        "pull_all": robust(pull[ok]),
        "completeness": float(jumps[cr_read[yy, xx], yy, xx].mean()) if len(yy) else float("nan"),
        "n_cr": int(len(yy)),
        "false_per_diff": float(false.sum() / ndiff),
        "false_per_diff_far": float((false & ~near).sum() / ndiff),
        "pred_per_diff": p,
        "false_pix": float(flagged_pix[clean_pix].mean()),
        "false_pix_far": float(flagged_pix[far_pix].mean()),
        "pred_pix": 1.0 - (1.0 - p) ** (case.nreads - 1),
    }


def worker(case: Case, code: str, seed: int, metrics: bool) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    import reprocess.ramps  # noqa: F401  -- imports are not part of the measurement
    if code.startswith("ours"):
        warm_up_ours()                       # nor is loading the compiled kernel
    if code in ("stcal", "likely"):
        import stcal.jump.jump  # noqa: F401
        import stcal.ramp_fitting.ramp_fit  # noqa: F401
    cube, truth = simulate(case, seed)
    inp = prepare(code, case, cube)
    if code == "ours-f64":
        del cube
    gc.collect()
    reset_ok = reset_peak_rss()
    rss0_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    slope, err, jumps = RUNNERS[code](case, inp)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"wall": wall, "peak_increase_mb": (peak_kb - rss0_kb) / 1024,
           "rss_before_mb": rss0_kb / 1024, "peak_mb": peak_kb / 1024,
           "peak_reset": reset_ok, "input_mb": input_mb(inp)}
    if metrics:
        out["quality"] = quality(code, case, truth, slope, err, jumps)
    return out


def run_subprocess(case_name: str, code: str, args, metrics: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", case_name, code,
           "--seed", str(args.seed), "--scan-layout", args.scan_layout]
    cmd += (["--quick"] if args.quick else []) + (["--metrics"] if metrics else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {case_name}/{code} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report

def summarise(runs: list[dict], case: Case) -> dict:
    walls = [r["wall"] for r in runs]
    wall = statistics.median(walls)
    return {"wall": wall, "wall_min": min(walls), "wall_max": max(walls), "nrep": len(runs),
            "tput": case.ny * case.nx * case.nreads / 1e6 / wall,
            "mem": statistics.median(r["peak_increase_mb"] for r in runs),
            "input_mb": runs[0]["input_mb"], "peak_reset": all(r["peak_reset"] for r in runs),
            "quality": runs[0]["quality"]}


def print_case(case: Case, res: dict[str, dict]) -> None:
    npix = case.ny * case.nx
    nval = npix * case.nreads
    print(f"\n=== {case.name}: {case.note}")
    print(f"    {npix} pixels x {case.nreads} reads, dt {case.read_time} s, gain {case.gain} e-/DN, "
          f"read noise {case.read_noise:.2f} DN/read ({case.read_noise * math.sqrt(2):.2f} CDS), "
          f"rates {case.rate_range[0]}-{case.rate_range[1]} DN/s")
    print(f"    cube size: float32 {nval * 4 / 2**20:.1f} MB (given to ours and stcal), "
          f"uint16 {nval * 2 / 2**20:.1f} MB (raw archive dtype), "
          f"float64 {nval * 8 / 2**20:.1f} MB (what reprocess.sloper passes)")
    print(f"\n{'code':<18} {'wall s (min-max)':>22} {'Mpix*reads/s':>13} {'input MB':>9} "
          f"{'peak dRSS MB':>13} {'dRSS/input':>10}")
    for code, r in res.items():
        span = f"{r['wall']:.3f} ({r['wall_min']:.3f}-{r['wall_max']:.3f})"
        print(f"{CODES[code]:<18} {span:>22} {r['tput']:>13.2f} {r['input_mb']:>9.1f} "
              f"{r['mem']:>13.1f} {r['mem'] / r['input_mb']:>10.2f}")
    print(f"\n{'code':<18} {'var/bound':>9} {'pull clean med/sig':>19} {'pull all med/sig':>17} "
          f"{'complete':>9} {'false/diff':>10} {'(far)':>8} {'pred':>8} {'false pix':>9} {'(far)':>8} "
          f"{'pred':>8}")
    for code, r in res.items():
        q = r["quality"]
        pc, pa = q["pull_clean"], q["pull_all"]
        print(f"{CODES[code]:<18} {q['var_bound']:>9.3f} {pc[0]:>+8.3f} / {pc[1]:<7.3f} "
              f"{pa[0]:>+7.3f} / {pa[1]:<7.3f} "
              f"{q['completeness']:>9.4f} {q['false_per_diff']:>10.1e} {q['false_per_diff_far']:>8.1e} "
              f"{q['pred_per_diff']:>8.1e} {q['false_pix']:>9.2e} {q['false_pix_far']:>8.1e} "
              f"{q['pred_pix']:>8.1e}")
        if q["finite"] < 1.0:
            print(f"{'':<18} note: {1 - q['finite']:.2e} of slopes/errors not finite (left out of pulls)")
    if "stcal" in res:
        s = res["stcal"]
        for code in ("ours", "ours-f64"):
            r = res[code]
            print(f"ratio {CODES[code]} / stcal 2pt+OLS_C: throughput x{r['tput'] / s['tput']:.2f}, "
                  f"peak dRSS x{r['mem'] / s['mem']:.2f}, "
                  f"input + peak dRSS x{(r['mem'] + r['input_mb']) / (s['mem'] + s['input_mb']):.2f}")


def print_header(args, cases) -> None:
    import scipy
    import stcal
    print(f"bench_ramps  {datetime.datetime.now().isoformat(timespec='seconds')}  "
          f"{platform.node()}  {os.cpu_count()} cores  Python {platform.python_version()}  "
          f"numpy {np.__version__}  scipy {scipy.__version__}  stcal {stcal.__version__}")
    from reprocess.ramps import default_kernel
    kernel = default_kernel()
    if kernel == "numba":
        import numba
        kernel = f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"
    print(f"ours: fit_ramps' default kernel ({kernel})")
    print(f"seed {args.seed}, {args.reps} rep(s) per code, each in a fresh process; "
          f"wall = jump detection + ramp fit, median over reps; peak dRSS = peak RSS during the fit "
          f"minus RSS just before it (inputs already built); input MB = arrays handed to the code "
          f"(stcal: cube + groupdq + pixeldq + 2-D maps)")
    print("pulls = (slope - truth)/err, median / 1.4826 MAD; clean = pixels without a cosmic ray; "
          "complete = cosmic rays flagged at the right read; false = flags with no true jump at that "
          "(read, pixel), per difference and per clean pixel; (far) = excluding the 4 neighbours of "
          "true jumps; pred = erfc(thr/sqrt2) (ours/LIKELY 4.5 sigma, stcal 4 sigma; stcal's "
          "neighbour flagging is not in it)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 DCEs for the scan map, 1 rep")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per code (default 3; 1 with --quick)")
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--cases", nargs="+", default=None, choices=["scan", "128x128x50"],
                    help="run only these cubes")
    ap.add_argument("--scan-layout", choices=["wide", "tall"], default="wide",
                    help="scan map as (32, 32, N*32) [default] or (32, N*32, 32)")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "CODE"), help=argparse.SUPPRESS)
    ap.add_argument("--metrics", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cases = make_cases(args.quick, args.scan_layout)

    if args.worker:
        case_name, code = args.worker
        print(json.dumps(worker(cases[case_name], code, args.seed, args.metrics)))
        return 0

    args.reps = args.reps or (1 if args.quick else 3)
    selected = args.cases or list(cases)
    print_header(args, cases)
    for name in selected:
        case = cases[name]
        res = {}
        for code in codes_for(case):
            runs = [run_subprocess(name, code, args, metrics=(i == 0))
                    for i in range(args.reps)]
            res[code] = summarise(runs, case)
        print_case(case, res)
        if not all(r["peak_reset"] for r in res.values()):
            print("note: /proc/self/clear_refs not writable: peak dRSS may include the simulation's peak")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
