"""Worker processes die with their parent: killing ``mips reprocess --workers N`` leaves nothing
running that goes on writing (issue 10, item 8; the workers are dask's, which exit when the
process that started them goes).  Linux only (/proc)."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

REPO = str(Path(__file__).resolve().parents[1])
HOOKS = str(Path(__file__).resolve().parent / "hooks")      # sitecustomize.py: slow writes, in workers too
SLOW_REPROCESS = """
import sys
from mips.cli import main
sys.exit(main(["reprocess", "--workers", "2", *sys.argv[1:]]))
"""


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _writing(obs: Path) -> bool:
    return any(p.name.startswith("bcd.partial") and any(p.rglob("*.fits")) for p in obs.iterdir())


def test_killing_the_parent_kills_the_workers(tmp_path):
    src = tmp_path / "src"
    simulate(load_config(n_dce=12, seed=9), src)
    obs = [tmp_path / "a", tmp_path / "b"]
    for d in obs:
        shutil.copytree(src / "raw", d / "raw")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HOOKS, REPO, os.environ.get("PYTHONPATH", "")]),
           "MIPS_TEST_WRITE_DELAY_S": "0.05"}              # 30 product files: ~1.5 s per folder
    parent = subprocess.Popen([sys.executable, "-c", SLOW_REPROCESS, *map(str, obs)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: all(map(_writing, obs)), 60), "the workers never started writing"
        workers = _children(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: not any(map(_alive, workers)), 5), "workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
    time.sleep(2.0)                                    # longer than the rest of a worker's run
    for d in obs:
        assert not (d / "bcd").exists()                # nothing was committed after the parent died
    assert main(["reprocess", str(obs[0])]) == 0       # the dead run's staging is cleaned up
    assert sorted(p.name for p in obs[0].iterdir()) == ["bcd", "raw"]


SLOW_SIMULATE = """
import sys, time
import mipssim.observe as observe
write = observe.write_hdus
def slow(path, hdul):
    time.sleep(0.3)
    return write(path, hdul)
observe.write_hdus = slow
from mips.cli import main
sys.exit(main(["simulate", "--band", "24", "--n-dce", "6", "--seed", "2", "--out", sys.argv[1],
               "--overwrite"]))
"""


def test_simulate_overwrite_killed_leaves_the_old_observation(tmp_path):
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    assert main(["reprocess", str(obs)]) == 0
    before = {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SIMULATE, str(obs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        new_raw = lambda: [p for p in obs.rglob("*_raw.fits") if p.stat().st_mtime > t0]  # noqa: E731
        assert _wait_for(lambda: len(new_raw()) >= 2, 60), "the simulation never got going"
    finally:
        proc.kill()
        proc.wait()
    after = {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()
             if not p.relative_to(obs).parts[0].startswith(("observation.partial-", ".mips"))}
    assert after == before                             # old raw/, truth.h5 and bcd/ untouched
    assert main(["reprocess", str(obs), "--overwrite"]) == 0      # consistent, and cleans up
    assert sorted(p.name for p in obs.iterdir()) == ["bcd", "raw", "truth.h5"]
