"""The simulator in chunks of DCEs (issue 13, item 2): identical files for any worker count and chunk
size, flat peak memory, and speed on 1 and 2 workers (prints; run by hand).

Three parts (``--part``, default all), every simulation in a fresh subprocess:

**identity** -- the default scan maps (``mips simulate --mode scan``: 1616 DCEs) at 70 and 24 um and
the default photometry AORs (240 DCEs at 70 um, 30 at 24 um), each simulated with one worker and all
its DCEs in one chunk (the reference), then with workers 1, 2 and 4 and chunks of 64 and 101 DCEs.
Compared: every raw file byte for byte, and truth.h5 by contents (every object's attributes and every
dataset's dtype, shape and bytes, by name; an HDF5 file's bytes could in principle depend on the order
objects are written in) and, for information, by bytes.

**memory** -- peak RSS (``ru_maxrss`` of the simulating process and, with workers, of its largest
worker) of the 70 um scan map with 16 legs (1616 DCEs) and 64 legs (6464), and of the 24 um scan map
with 4 legs (404 DCEs) and 16 (1616), chunks of 64 DCEs; beside the same for another tree
(``--peer``, e.g. main before this change, whose truth.h5 was built in memory).

**speed** -- the 1616-DCE 70 um scan map on 1 and 2 workers, and the peer on one, interleaved,
``--reps`` each (median; min-max); wall time and CPU time (user + system, the process and its
workers).  On a shared machine only the ratios in one run mean anything.

    python benchmarks/sim_scan_chunks.py [--part identity|memory|speed] [--reps 3] \\
        [--peer /work/main]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


MAPS = {"scan70": dict(band=70, mode="scan"), "scan24": dict(band=24, mode="scan"),
        "phot70": dict(band=70), "phot24": dict(band=24)}
RUNS = [(1, 64), (2, 64), (4, 64), (1, 101), (2, 101), (4, 101)]


def _child(args) -> None:
    """Simulate one configuration (``--child JSON``) and print wall, CPU and peak RSS as JSON."""
    if args.tree:
        sys.path.insert(0, args.tree)
    spec = json.loads(args.child)
    from mipssim.config import load_config
    from mipssim.observe import simulate
    cfg = load_config(seed=spec.get("seed", 1), **spec["cfg"])
    extra = {k: spec[k] for k in ("workers", "chunk_dces") if spec.get(k) is not None}
    out = Path(spec["out"]) if spec.get("out") else Path(tempfile.mkdtemp()) / "obs"
    t0, c0 = time.perf_counter(), os.times()
    simulate(cfg, out, **extra)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) \
        + (c1.children_system - c0.children_system)
    ndce = len(os.listdir(out / "raw"))
    if not spec.get("out"):
        shutil.rmtree(out.parent)
    print(json.dumps({"wall": wall, "cpu": cpu, "ndce": ndce,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def _spawn(spec: dict, tree: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)] + (["--tree", tree] if tree else [])
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _contents(path: Path) -> dict:
    import h5py
    import numpy as np

    def attrs(obj):
        return {k: (np.asarray(v).dtype.str, np.shape(v), np.asarray(v).tobytes())
                for k, v in obj.attrs.items()}
    out = {}
    with h5py.File(path) as f:
        out["/"] = (attrs(f), None)
        f.visititems(lambda name, obj: out.__setitem__(name, (attrs(obj), (
            obj.dtype.str, obj.shape, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None)))
    return out


def identity(root: Path) -> None:
    print("\n== identity: every raw file and truth.h5 against 1 worker with all DCEs in one chunk")
    print(f"{'observation':12s} {'DCEs':>5s} {'workers':>7s} {'chunk':>5s} {'raw files':>10s} "
          f"{'truth contents':>15s} {'truth bytes':>12s} {'wall s':>7s}")
    for name, cfg in MAPS.items():
        ref = root / f"{name}-ref"
        r = _spawn({"cfg": cfg, "chunk_dces": 100_000, "out": str(ref)})
        raw_ref = sorted((ref / "raw").iterdir())
        truth_ref, truth_bytes = _contents(ref / "truth.h5"), (ref / "truth.h5").read_bytes()
        print(f"{name:12s} {r['ndce']:5d} {1:7d} {'all':>5s} {'reference':>10s} {'':>15s} {'':>12s} "
              f"{r['wall']:7.1f}")
        for workers, chunk in RUNS:
            obs = root / f"{name}-{workers}-{chunk}"
            r = _spawn({"cfg": cfg, "workers": workers, "chunk_dces": chunk, "out": str(obs)})
            raw = sorted((obs / "raw").iterdir())
            same_raw = ([p.name for p in raw] == [p.name for p in raw_ref]
                        and all(a.read_bytes() == b.read_bytes() for a, b in zip(raw, raw_ref)))
            same_truth = _contents(obs / "truth.h5") == truth_ref
            same_bytes = (obs / "truth.h5").read_bytes() == truth_bytes
            verdict = [("identical" if same else bad) for same, bad in
                       ((same_raw, "DIFFER"), (same_truth, "DIFFER"), (same_bytes, "differ"))]
            print(f"{name:12s} {r['ndce']:5d} {workers:7d} {chunk:5d} {verdict[0]:>10s} {verdict[1]:>15s} "
                  f"{verdict[2]:>12s} {r['wall']:7.1f}")
            shutil.rmtree(obs)
        shutil.rmtree(ref)


def memory(peer: str | None) -> None:
    print("\n== memory: peak RSS (MB) against the number of DCEs, chunks of 64 DCEs")
    print(f"{'code':10s} {'map':22s} {'DCEs':>6s} {'workers':>7s} {'process':>8s} {'worker':>7s} "
          f"{'wall s':>7s}")
    cases = [("70 um, 16 legs", dict(band=70, mode="scan", scan_legs=16)),
             ("70 um, 64 legs", dict(band=70, mode="scan", scan_legs=64)),
             ("24 um, 4 legs", dict(band=24, mode="scan", scan_legs=4)),
             ("24 um, 16 legs", dict(band=24, mode="scan", scan_legs=16))]
    for label, cfg in cases:
        for code, tree, workers in (("ours", None, 1), ("ours", None, 2), ("peer", peer, 1)):
            if code == "peer" and not peer:
                continue
            spec = {"cfg": cfg} if code == "peer" else {"cfg": cfg, "workers": workers, "chunk_dces": 64}
            r = _spawn(spec, tree)
            worker = f"{r['worker_rss_mb']:7.0f}" if workers > 1 else f"{'-':>7s}"
            print(f"{code:10s} {label:22s} {r['ndce']:6d} {workers:7d} {r['rss_mb']:8.0f} {worker} "
                  f"{r['wall']:7.1f}", flush=True)


def speed(reps: int, peer: str | None) -> None:
    print(f"\n== speed: the default 70 um scan map (1616 DCEs), {reps} rep(s) each, interleaved")
    codes = {"ours, 1 worker": ({"workers": 1}, None), "ours, 2 workers": ({"workers": 2}, None)}
    if peer:
        codes["peer, 1 worker"] = ({}, peer)
    runs = {c: [] for c in codes}
    for _ in range(reps):
        for code, (extra, tree) in codes.items():
            runs[code].append(_spawn({"cfg": dict(band=70, mode="scan"), **extra}, tree))
    base = statistics.median(r["wall"] for r in runs["ours, 1 worker"])
    print(f"{'code':18s} {'wall s':>7s} {'(min-max)':>15s} {'/ ours 1':>9s} {'CPU s':>7s} {'(min-max)':>15s}")
    for code, rs in runs.items():
        w = [r["wall"] for r in rs]
        c = [r["cpu"] for r in rs]
        print(f"{code:18s} {statistics.median(w):7.2f} {f'({min(w):.2f}-{max(w):.2f})':>15s} "
              f"{statistics.median(w) / base:9.2f} {statistics.median(c):7.2f} "
              f"{f'({min(c):.2f}-{max(c):.2f})':>15s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("identity", "memory", "speed", "all"), default="all")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer", help="another tree (put first on sys.path) for memory and speed")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    import numpy as np
    print(f"sim_scan_chunks  {time.strftime('%Y-%m-%dT%H:%M:%S')}  {platform.node()}  "
          f"{os.cpu_count()} cores  "
          f"load {os.getloadavg()[0]:.1f}  Python {platform.python_version()}  numpy {np.__version__}  "
          f"peer {args.peer or '-'}")
    if args.part in ("identity", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            identity(Path(tmp))
    if args.part in ("memory", "all"):
        memory(args.peer)
    if args.part in ("speed", "all"):
        speed(args.reps, args.peer)


if __name__ == "__main__":
    main()
