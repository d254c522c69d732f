"""A full disk while products are written: a one-line error, no crash, nothing half-written left
(issue 10, item 8: "disk full while ramps.h5 is written ends in SIGSEGV ... and bcd.partial/ left").

Three ways to fill the disk: a write that raises ENOSPC (monkeypatched, in process); the
per-file size limit RLIMIT_FSIZE (any Linux user; the failing write gets EFBIG, the same error
path in HDF5 as ENOSPC); a real 2.6 MB tmpfs in a private mount namespace (``unshare -rm``,
skipped where user namespaces are not allowed).
"""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate

REPO = str(Path(__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _copy(obs, dst):
    shutil.copytree(obs / "raw", dst / "raw")
    return dst, {p.name: p.read_bytes() for p in (dst / "raw").iterdir()}


def _assert_clean_failure(status, stderr, obs, raw_before):
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert status == 2 and len(lines) == 1, stderr[-2000:]
    assert str(obs) in lines[0] and ("no space left" in lines[0] or "too large" in lines[0]), lines
    assert sorted(p.name for p in obs.iterdir()) == ["raw"]          # no bcd, no staging, no lock
    assert {p.name: p.read_bytes() for p in (obs / "raw").iterdir()} == raw_before


@pytest.mark.parametrize("band", [70, 24])
def test_enospc_while_writing_products(obs70, obs24, tmp_path, monkeypatch, capsys, band):
    import reprocess.io as rio
    obs, raw = _copy(obs70 if band == 70 else obs24, tmp_path / "obs")
    calls = []
    write = rio.write_image

    def disk_fills(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(*args, **kwargs)
    monkeypatch.setattr(rio, "write_image", disk_fills)
    status = main(["reprocess", str(obs)])
    _assert_clean_failure(status, capsys.readouterr().err, obs, raw)


def test_enospc_while_simulating_keeps_the_old_observation(tmp_path, monkeypatch, capsys):
    import mipssim.observe as observe
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    before = {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()}

    def disk_full(path, hdul):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(observe, "write_hdus", disk_full)
    status = main(["simulate", "--band", "24", "--n-dce", "3", "--seed", "2", "--out", str(obs),
                   "--overwrite"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and str(obs) in lines[0] and "no space" in lines[0]
    assert {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()} == before


LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
"""


def _run_limited(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LIMITED + code, *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_hdf5_file_fails_cleanly_when_the_write_fails(tmp_path):
    code = """
import numpy as np
from calibration.folders import hdf5_file
try:
    with hdf5_file(sys.argv[1]) as h5:
        h5.create_dataset("big", data=np.arange(100_000.0))   # 800 kB > the 100 kB limit
except OSError as exc:
    print("OSError", exc.errno)
"""
    target = tmp_path / "x.h5"
    res = _run_limited(code, target)
    assert res.returncode == 0 and res.stdout.split() == ["OSError", str(errno.EFBIG)], res.stderr
    assert list(tmp_path.iterdir()) == []                          # no partial file


REPROCESS = """
import sys
from mips.cli import main
sys.exit(main(["reprocess", sys.argv[1]]))
"""
def test_ramps_h5_on_a_full_disk(obs70, tmp_path):
    obs, raw = _copy(obs70, tmp_path / "obs")          # the FITS products fit, ramps.h5 does not
    res = _run_limited(REPROCESS, obs)
    assert res.returncode != -11, "SIGSEGV"
    _assert_clean_failure(res.returncode, res.stderr, obs, raw)


def _can_mount_tmpfs(where: Path) -> bool:
    try:
        res = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {where}"],
                             capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0


def test_real_full_disk_in_a_private_tmpfs(obs70, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    script = (f"mount -t tmpfs -o size=2600k tmpfs {mnt} && cp -r {obs70 / 'raw'} {mnt}/raw && "
              f"{sys.executable} -c '{REPROCESS}' {mnt}; echo \"status=$?\"; ls -A {mnt}; "
              f"cmp -s {mnt}/raw/{sorted(os.listdir(obs70 / 'raw'))[0]} "
              f"{obs70 / 'raw' / sorted(os.listdir(obs70 / 'raw'))[0]} && echo raw-intact")
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=ENV, capture_output=True,
                         text=True, timeout=300)
    out = res.stdout.split()
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("INFO")]
    assert out[0] == "status=2" and out[1:] == ["raw", "raw-intact"], (res.stdout, res.stderr[-2000:])
    assert len(lines) == 1 and "no space left on device" in lines[0], lines


def test_truth_h5_on_a_full_disk(tmp_path):
    """truth.h5 is built in memory: a full disk ends simulate with one line, not SIGSEGV."""
    out = tmp_path / "obs"
    code = """
import sys
from mips.cli import main
sys.exit(main(["simulate", "--n-dce", "30", "--out", sys.argv[1]]))
"""
    res = _run_limited(code, out)
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert str(out) in lines[0] and "too large" in lines[0]
    assert not out.exists()                                  # a folder it created is removed
