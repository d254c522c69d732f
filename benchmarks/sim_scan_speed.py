"""Speed of the default 70 um scan map simulated read by read, beside its ramps alone and a numpy
per-read Poisson floor (issue 13's speed figure; prints; run by hand).

Three codes, each run ``--reps`` times (default 3), each (code, rep) in a fresh subprocess so that
the peak RSS is its own; medians are quoted:

(a) **simulate**: ``mipssim.observe.simulate`` of the default scan map (``mips simulate --band 70
    --mode scan``: 16 legs, 1616 DCEs of 32 reads, 32x32 pixels) into a temporary folder, files
    written;
(b) **ramps**: the time spent inside ``simulate_ramps`` during (a), summed over the DCEs (measured
    in the same run by wrapping the function; the read-by-read detector physics);
(c) **floor**: what any read-by-read simulator of those ramps must at least do in numpy: for
    1616 DCEs x 32 reads, ``rng.poisson(lam, size=(32, 32))`` per read and a cumulative sum over
    the reads of each DCE.  ``lam`` is the electrons per read of the default scene's background
    (zodi + cirrus) through the true flat, so the Poisson sampler works at the simulator's means.

Ratios: simulate / floor and ramps / floor (issue 13's goal: simulate <= 7 s and within 1.3x of the
floor).  Peak RSS is ``ru_maxrss`` of the subprocess.

    python benchmarks/sim_scan_speed.py [--reps 3] [--seed 1]

To time another version of the simulator, put its tree first on ``PYTHONPATH`` (the subprocesses
inherit the environment).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run_simulate(seed: int) -> dict:
    """(a) and (b): simulate the default 70 um scan map, timing ``simulate_ramps`` inside it."""
    import mipssim.observe as observe
    from mipssim.config import load_config

    inner = observe.simulate_ramps
    spent = [0.0, 0]

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0
            spent[1] += 1

    observe.simulate_ramps = timed
    cfg = load_config(band=70, mode="scan", seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        observe.simulate(cfg, Path(tmp) / "obs")
        wall = time.perf_counter() - t0
        nfiles = len(list((Path(tmp) / "obs" / "raw").iterdir()))
    return {"wall": wall, "ramps": spent[0], "ndce": spent[1], "nfiles": nfiles}


def _floor_lam() -> "np.ndarray":
    """Electrons per read of the default 70 um scan map's background through the true flat."""
    from mipssim.config import load_config
    from mipssim.detector import default_detector

    cfg = load_config(band=70, mode="scan")
    det = default_detector(70)
    spec = det.spec
    gain = cfg.gain_e_per_dn or spec.gain_e_per_dn
    sky = cfg.zodi_mjysr + cfg.cirrus_mjysr
    return spec.dn_s_per_mjysr * det.flat * sky * spec.read_time_s * gain


def _run_floor(seed: int, ndce: int = 1616, nreads: int = 32) -> dict:
    """(c): per-read Poisson draws and a cumulative sum per DCE, nothing else."""
    import numpy as np

    lam = _floor_lam()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    total = 0.0
    for _ in range(ndce):
        reads = np.empty((nreads,) + lam.shape)
        for k in range(nreads):
            reads[k] = rng.poisson(lam, size=lam.shape)
        total += float(np.cumsum(reads, axis=0)[-1, 0, 0])
    return {"wall": time.perf_counter() - t0, "lam_median": float(np.median(lam)), "check": total}


def _child(code: str, seed: int) -> None:
    out = _run_simulate(seed) if code == "simulate" else _run_floor(seed)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(out))


def _spawn(code: str, seed: int) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", code, "--seed", str(seed)],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", choices=("simulate", "floor"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.seed)
        return

    import numpy as np
    runs = {"simulate": [], "floor": []}
    for _ in range(args.reps):                 # interleaved, so both see the same machine load
        for code in runs:
            runs[code].append(_spawn(code, args.seed))
    sim, floor = runs["simulate"], runs["floor"]
    med = {
        "simulate": statistics.median(r["wall"] for r in sim),
        "ramps": statistics.median(r["ramps"] for r in sim),
        "floor": statistics.median(r["wall"] for r in floor),
    }
    rng = {"simulate": [r["wall"] for r in sim], "ramps": [r["ramps"] for r in sim],
           "floor": [r["wall"] for r in floor]}
    rss = {"simulate": max(r["rss_mb"] for r in sim), "ramps": max(r["rss_mb"] for r in sim),
           "floor": max(r["rss_mb"] for r in floor)}
    print(f"sim_scan_speed  {time.strftime('%Y-%m-%dT%H:%M:%S')}  {platform.node()}  "
          f"{os.cpu_count()} cores  Python {platform.python_version()}  numpy {np.__version__}")
    print(f"default 70 um scan map: {sim[0]['ndce']} DCEs of 32 reads x 32x32 ({sim[0]['nfiles']} raw "
          f"files), seed {args.seed}; {args.reps} rep(s) per code, each in a fresh process; "
          f"floor lam median {floor[0]['lam_median']:.0f} e-/read")
    print(f"{'code':34s} {'median s':>9s} {'(min-max)':>15s} {'/ floor':>8s} {'peak RSS MB':>12s}")
    labels = {"simulate": "(a) simulate (files written)", "ramps": "(b) ramps (inside simulate_ramps)",
              "floor": "(c) numpy per-read Poisson floor"}
    for code in ("simulate", "ramps", "floor"):
        lo, hi = min(rng[code]), max(rng[code])
        print(f"{labels[code]:34s} {med[code]:9.2f} {f'({lo:.2f}-{hi:.2f})':>15s} "
              f"{med[code] / med['floor']:8.2f} {rss[code]:12.0f}")
    print(f"simulate - ramps (per-DCE overhead): {med['simulate'] - med['ramps']:.2f} s, "
          f"{1e3 * (med['simulate'] - med['ramps']) / sim[0]['ndce']:.2f} ms per DCE "
          f"(ramps' peak RSS is the simulate process's)")


if __name__ == "__main__":
    main()
