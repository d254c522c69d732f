"""Simulation speed of a default Ge observation, every effect on, beside the same without the
flight-detector effects of issue 12 (prints; run by hand).

The default 70 um observation: 240 DCEs of 80 reads (10 MIPS s), 32x32 pixels.  Each case is run
``--reps`` times into a fresh temporary folder (files written, as ``mips simulate`` does); the
median wall time is quoted, and the ratio of the medians.  Issue 12's bar: every effect on, no
slower than 1.5x the 4.4 s the simulator took before those effects (commit 0b5809b, this machine).

    python benchmarks/sim_speed.py [--band 70] [--reps 3]
"""
import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from mipssim.config import SimConfig, load_config
from mipssim.observe import simulate

# switches added with the flight-like Ge detector (issue 12); absent ones are skipped
FLIGHT_EFFECTS = ("excess_noise", "transient", "stim_latents", "anneals", "leak")


def _time(cfg: SimConfig, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            simulate(cfg, Path(tmp) / "obs")
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--band", type=int, default=70)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    full = load_config(band=args.band)
    off = {f"include_{e}": False for e in FLIGHT_EFFECTS if hasattr(full, f"include_{e}")}
    plain = dataclasses.replace(full, **off)
    t_full, t_plain = _time(full, args.reps), _time(plain, args.reps)
    print(f"band {args.band}, {full.n_dce} DCEs, median of {args.reps} runs")
    print(f"  every effect on                       {statistics.median(t_full):6.2f} s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in t_full)})")
    print(f"  without {', '.join(k[8:] for k in off):<29} {statistics.median(t_plain):6.2f} s  "
          f"(runs: {', '.join(f'{t:.2f}' for t in t_plain)})")
    print(f"  ratio {statistics.median(t_full) / statistics.median(t_plain):.2f}; "
          f"every effect on / 4.4 s (before issue 12) = {statistics.median(t_full) / 4.4:.2f} "
          f"(goal <= 1.5)")


if __name__ == "__main__":
    main()
