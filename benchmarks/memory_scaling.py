"""Peak memory of simulating and reprocessing an observation against its number of DCEs (issue 16,
item 3; issue 13: the simulator's memory flat in the DCEs).  Prints; run by hand.

For each band (24, 70, 160) the default scan map (16 legs: 1616 DCEs) and one of 4x as many DCEs
(64 legs: 6464; at 70 um 17 legs at the slow rate: 6579, see SCANS), and with ``--photometry`` photometry AORs of the same DCE counts (``--n-dce``),
are simulated and then reprocessed, each in a fresh subprocess that reports its peak RSS
(``ru_maxrss``); the RSS of it and its children summed (the reprocessor writes ``ramps.h5`` in a
child process) is sampled every 50 ms (``tree``; ``RUSAGE_CHILDREN`` would count every fork at
its parent's size).  With ``--peer
TREE`` (e.g. a checkout of main before the change) the same folders are also reprocessed by that
tree's code, for observations of at most ``--peer-max-dces`` DCEs (main needs ~1 MB per 70 um DCE).
The last lines give, per band and step, the slope between the two sizes in kB per DCE: "flat in
the number of DCEs" is a slope near 0.

    python benchmarks/memory_scaling.py --data /tmp/memscale [--bands 24,70,160] [--photometry] \\
        [--peer /work/main] [--peer-max-dces 1616] [--reuse]

``--reuse`` keeps observations already simulated in ``--data`` (their simulation is not measured
again).  Simulations run one at a time (``nice`` them on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the scan maps: 16 legs at the medium rate (101 DCEs a leg), and 4x as many DCEs: 64 legs; at 70 um
# the simulator's scene rendering fails on a 2-degree map (astropy all_world2pix NoConvergence for
# sources far from a DCE's pointing), so there the same 30' legs at the slow rate, 17 of them
SCANS = {1616: lambda band: {"scan_legs": 16},
         6464: lambda band: {"scan_legs": 64} if band != 70 else {"scan_legs": 17, "scan_rate": "slow"}}
SIZES = tuple(SCANS)


def _child(args) -> None:
    """Simulate or reprocess one folder (``--child JSON``) and print wall time and peak RSS as JSON."""
    if args.tree:
        sys.path.insert(0, args.tree)
    spec = json.loads(args.child)
    out = Path(spec["out"])
    t0 = time.perf_counter()
    if spec["step"] == "simulate":
        from mipssim.config import load_config
        from mipssim.observe import simulate
        simulate(load_config(seed=1, **spec["cfg"]), out, overwrite=True)
    else:
        from reprocess.pipeline import reprocess
        reprocess(out, overwrite=True)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "ndce": len(os.listdir(out / "raw")),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _spawn(spec: dict, tree: str | None = None, every_s: float = 0.05) -> dict:
    """Run a child; also sample the RSS summed over it and its descendants (the ramps.h5 writer)."""
    import psutil

    cmd = [sys.executable, __file__, "--child", json.dumps(spec)] + (["--tree", tree] if tree else [])
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        top, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                procs = [top] + top.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(every_s)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{spec}: {err.read().strip().splitlines()[-1:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["tree_mb"] = peak / 2 ** 20
    return result


def _cases(bands, photometry: bool):
    for band in bands:
        for ndce, legs in SCANS.items():
            yield band, "scan", ndce, {"band": band, "mode": "scan", **legs(band)}
        if photometry:
            for ndce in SIZES:
                yield band, "photometry", ndce, {"band": band, "n_dce": ndce}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="folder for the simulated observations (required)")
    ap.add_argument("--bands", default="24,70,160")
    ap.add_argument("--photometry", action="store_true", help="also photometry AORs of 1616 and 6464 DCEs")
    ap.add_argument("--peer", help="another tree (put first on sys.path) to reprocess the same folders")
    ap.add_argument("--peer-max-dces", type=int, default=1616)
    ap.add_argument("--reuse", action="store_true", help="keep observations already in --data")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    if not args.data:
        ap.error("--data is required")
    import numpy as np
    print(f"memory_scaling  {time.strftime('%Y-%m-%dT%H:%M:%S')}  {platform.node()}  {os.cpu_count()} cores  "
          f"load {os.getloadavg()[0]:.1f}  Python {platform.python_version()}  numpy {np.__version__}  "
          f"peer {args.peer or '-'}")
    print("peak RSS in MB: process = ru_maxrss of the simulating/reprocessing process (exact); tree = "
          "the RSS of it and its child processes (the ramps.h5 writer) summed, sampled every 50 ms; "
          "kB/DCE = process / DCEs")
    print(f"{'code':6s} {'band':>4s} {'mode':10s} {'DCEs':>5s} {'step':10s} {'process':>8s} {'tree':>6s} "
          f"{'kB/DCE':>7s} {'wall s':>7s}")
    data = Path(args.data)
    peaks: dict = {}
    for band, mode, ndce, cfg in _cases([int(b) for b in args.bands.split(",")], args.photometry):
        obs = data / f"{mode}{band}_{ndce}"
        runs = []
        if not (args.reuse and (obs / "raw").is_dir()):
            runs.append(("ours", "simulate", None))
        runs.append(("ours", "reprocess", None))
        if args.peer and ndce <= args.peer_max_dces:
            runs.append(("peer", "reprocess", args.peer))
        for code, step, tree in runs:
            r = _spawn({"step": step, "cfg": cfg, "out": str(obs)}, tree)
            peaks[(code, band, mode, step, r["ndce"])] = r["rss_mb"]
            print(f"{code:6s} {band:4d} {mode:10s} {r['ndce']:5d} {step:10s} {r['rss_mb']:8.0f} "
                  f"{r['tree_mb']:6.0f} {1024 * r['rss_mb'] / r['ndce']:7.1f} {r['wall']:7.1f}", flush=True)
    print("\nslope of the process peak between the two sizes (kB per extra DCE; 0 = flat):")
    for (code, band, mode, step, n), peak in sorted(peaks.items(), key=lambda kv: kv[0][:4] + (kv[0][4],)):
        bigger = [(m, p) for (c, b, md, s, m), p in peaks.items()
                  if (c, b, md, s) == (code, band, mode, step) and m > n]
        for m, p in bigger:
            print(f"  {code:6s} {band:4d} {mode:10s} {step:10s} {n:5d} -> {m:5d} DCEs: "
                  f"{peak:6.0f} -> {p:6.0f} MB, {1024 * (p - peak) / (m - n):+.1f} kB/DCE")


if __name__ == "__main__":
    main()
