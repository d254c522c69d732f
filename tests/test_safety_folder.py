"""Observation-folder safety: one writer at a time, unique staging, atomic commits, recovery.

Issue 10, "What failed" item 8: concurrent runs on one folder, a folder named twice, stale
staging, a ``bcd`` symlink, an interrupted ``simulate --overwrite``.
"""
import contextlib
import io
import multiprocessing
import os
import shutil
import time

import numpy as np
import pytest
from astropy.io import fits

import calibration.folders as folders
from calibration.folders import LOCK_NAME, folder_lock
from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate

TRIALS = 20


def _copy(obs, dst):
    shutil.copytree(obs / "raw", dst / "raw")
    return dst


def _expected_products(obs):
    """Product names a complete bcd/ of ``obs`` must hold (from its raw headers)."""
    names = set()
    for raw in (obs / "raw").glob("*_raw.fits"):
        h = fits.getheader(raw)
        stem = raw.name[: -len("_raw.fits")]
        if h["CHNLNUM"] == 1:
            if h["DCENUM"] != 0:
                names |= {f"{stem}_{k}.fits" for k in ("bcd", "bunc", "bbmsk")}
        elif not h["STIMFLSH"]:
            names |= {f"{stem}_{k}.fits" for k in ("bcd", "bunc", "bmask")}
    return names | ({"ramps.h5"} if h["CHNLNUM"] != 1 else set()) | {"manifest.json"}


def _assert_complete(obs):
    """bcd/ holds every product, each a readable FITS image; nothing else is left in the folder."""
    got = {p.name for p in (obs / "bcd").iterdir()}
    assert got == _expected_products(obs)
    for name in got - {"ramps.h5", "manifest.json"}:
        with fits.open(obs / "bcd" / name) as hdul:
            hdul.verify("exception")
            assert hdul[0].data.shape[-2:] in ((128, 128), (32, 32)) and "RAWFILE" in hdul[0].header
    assert sorted(p.name for p in obs.iterdir() if p.name != "truth.h5") == ["bcd", "raw"]


def _errors(text):
    return [ln for ln in text.strip().splitlines() if ln and not ln.startswith(("INFO", "WARNING"))]


def _slow_writes(delay_s):
    """Make product writes slow (in this process), so that two runs surely overlap."""
    import reprocess.io as rio
    write = rio.write_image

    def slow(*args, **kwargs):
        time.sleep(delay_s)
        return write(*args, **kwargs)
    rio.write_image = slow


def _contender(argv, barrier, queue, delay_s):
    _slow_writes(delay_s)
    err = io.StringIO()
    barrier.wait()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    queue.put((status, err.getvalue()))


def _race(argv, delay_s=0.01):
    """Run ``mips <argv>`` in two processes released at the same instant; [(status, stderr)]."""
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(argv, barrier, queue, delay_s)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    return results


def test_two_concurrent_runs_one_completes_one_is_refused(obs24, tmp_path):
    outcomes = []
    for trial in range(TRIALS):
        obs = _copy(obs24, tmp_path / f"t{trial}")
        results = sorted(_race(["reprocess", str(obs)]), key=lambda r: r[0])
        (ok, ok_err), (refused, refused_err) = results
        outcomes.append((ok, refused))
        assert ok == 0 and not _errors(ok_err), ok_err
        lines = _errors(refused_err)
        assert refused != 0 and len(lines) == 1, refused_err
        assert str(obs) in lines[0] and "another run" in lines[0], lines
        _assert_complete(obs)
    assert outcomes == [(0, 2)] * TRIALS


def test_same_folder_named_twice_with_workers(obs70, tmp_path, capsys):
    obs = _copy(obs70, tmp_path / "obs")
    alias = tmp_path / "alias"
    alias.symlink_to(obs)
    assert main(["reprocess", "--workers", "2", str(obs), str(alias)]) == 2
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and str(alias) in lines[0] and "same folder" in lines[0], lines
    _assert_complete(obs)                                # reprocessed once, completely
    assert main(["reprocess", "--workers", "2", "--keep-going", "--overwrite", str(obs), str(obs)]) == 1
    out, err = capsys.readouterr()
    assert out.count(f"{obs}: complete") == 1 and len(_errors(err)) == 1, (out, err)   # valid: skipped
    _assert_complete(obs)


def test_stale_staging_of_a_dead_run_is_cleaned(obs24, tmp_path):
    obs = _copy(obs24, tmp_path / "obs")
    for name in ("bcd.partial-dead1", "bcd.partial", "observation.partial-dead2"):
        (obs / name).mkdir()
        (obs / name / "junk.fits").write_bytes(b"half written")
    (obs / LOCK_NAME).write_text("12345\n")              # a lock file whose holder died
    assert main(["reprocess", str(obs)]) == 0
    _assert_complete(obs)


def test_stale_staging_is_left_alone_while_its_run_lives(obs24, tmp_path):
    obs = _copy(obs24, tmp_path / "obs")
    partial = obs / "bcd.partial-alive"
    with folder_lock(obs):                               # a live run (this process) holds it
        partial.mkdir()                                  # ... and writes its staging folder
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=lambda: os._exit(main(["reprocess", str(obs)])))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 2
        assert partial.is_dir() and not (obs / "bcd").exists()
    assert not (obs / LOCK_NAME).exists()                # released and removed


def test_legacy_bcd_old_is_restored_or_removed(obs24, tmp_path):
    obs = _copy(obs24, tmp_path / "obs")
    assert main(["reprocess", str(obs)]) == 0
    os.rename(obs / "bcd", obs / "bcd.old")              # an earlier version died between renames
    (obs / "bcd.partial").mkdir()
    with folder_lock(obs):
        pass
    _assert_complete(obs)                                # the old products are back in place
    shutil.copytree(obs / "bcd", obs / "bcd.old")        # ... and a stale copy beside them goes
    assert main(["reprocess", str(obs), "--overwrite"]) == 0
    _assert_complete(obs)


def test_bcd_symlink_is_not_replaced(obs24, tmp_path, capsys):
    obs = _copy(obs24, tmp_path / "obs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    (obs / "bcd").symlink_to(elsewhere)
    for extra in ([], ["--overwrite"]):
        assert main(["reprocess", str(obs), *extra]) != 0
        lines = _errors(capsys.readouterr().err)
        assert len(lines) == 1 and str(obs / "bcd") in lines[0] and "symbolic link" in lines[0]
    assert (obs / "bcd").is_symlink() and os.listdir(elsewhere) == ["precious.txt"]


def _seed_of_raw(obs):
    return {fits.getval(p, "SIMSEED") for p in (obs / "raw").glob("*_raw.fits")}


def _seed_of_truth(obs):
    import h5py
    with h5py.File(obs / "truth.h5", "r") as h5:
        return int(h5.attrs["seed"])


@pytest.mark.parametrize("survived", range(7))   # a commit here is 7 renames
def test_simulate_overwrite_killed_during_commit_leaves_old_or_new(tmp_path, monkeypatch, survived):
    """Killed after ``survived`` of the commit's renames: the next writer finds the old
    observation (with its products) or the new one (without), never a mixture."""
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    assert main(["reprocess", str(obs)]) == 0
    moves = []
    rename = os.rename

    def killed_after_some_renames(src, dst):
        if len(moves) == survived:
            raise KeyboardInterrupt("killed")
        moves.append((src, dst))
        rename(src, dst)
    monkeypatch.setattr(folders.os, "rename", killed_after_some_renames)
    with pytest.raises(KeyboardInterrupt):
        simulate(load_config(band=24, n_dce=3, seed=2), obs, overwrite=True)
    monkeypatch.undo()
    with folder_lock(obs):                               # the next writer: recovers first
        seed = _seed_of_truth(obs)
        assert _seed_of_raw(obs) == {seed}
        assert (obs / "bcd").exists() == (seed == 1)
    assert seed == (1 if survived == 0 else 2)           # the journal exists after the first rename
    assert sorted(p.name for p in obs.iterdir() if p.name != "bcd") == ["raw", "truth.h5"]
    if seed == 1:
        _assert_complete(obs)
    else:
        assert main(["reprocess", str(obs)]) == 0
        _assert_complete(obs)


def test_failed_simulate_overwrite_keeps_the_old_observation(tmp_path, monkeypatch):
    import mipssim.observe as observe
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    assert main(["reprocess", str(obs)]) == 0
    before = {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()}
    calls = []
    write = observe.write_hdus

    def fails_on_second_dce(path, hdul):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        write(path, hdul)
    monkeypatch.setattr(observe, "write_hdus", fails_on_second_dce)
    with pytest.raises(KeyboardInterrupt):
        simulate(load_config(band=24, n_dce=3, seed=2), obs, overwrite=True)
    after = {p.relative_to(obs): p.read_bytes() for p in obs.rglob("*") if p.is_file()}
    assert after == before                                # old raw, truth and bcd intact
    assert not (tmp_path / "fresh").exists()
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        simulate(load_config(band=24, n_dce=3, seed=2), tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()              # a folder it created is not left behind


def test_simulate_refuses_while_the_folder_is_being_reprocessed(tmp_path):
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    with folder_lock(obs):
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=lambda: os._exit(main(
            ["simulate", "--band", "24", "--n-dce", "3", "--seed", "2", "--out", str(obs),
             "--overwrite"])))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 2
    assert _seed_of_truth(obs) == 1


def test_simulate_overwrite_replaces_raw_truth_and_drops_old_bcd(tmp_path):
    obs = tmp_path / "obs"
    simulate(load_config(band=24, n_dce=3, seed=1), obs)
    assert main(["reprocess", str(obs)]) == 0
    with pytest.raises(FileExistsError, match="--overwrite"):
        simulate(load_config(band=24, n_dce=3, seed=2), obs)
    simulate(load_config(band=24, n_dce=3, seed=2), obs, overwrite=True)
    assert _seed_of_raw(obs) == {2} and _seed_of_truth(obs) == 2
    assert sorted(p.name for p in obs.iterdir()) == ["raw", "truth.h5"]


def test_lock_is_reentrant_and_refuses_other_processes(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):
            assert (tmp_path / LOCK_NAME).read_text().split() == [str(os.getpid())]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                      # child: must be refused at once
            try:
                with folder_lock(tmp_path):
                    os.write(w, b"got it")
            except folders.FolderError as exc:
                os.write(w, str(exc).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        msg = os.read(r, 500).decode()
        assert str(tmp_path) in msg and f"pid {os.getpid()}" in msg, msg
    assert not (tmp_path / LOCK_NAME).exists()
    assert np.all([not p.name.startswith(".mips") for p in tmp_path.iterdir()])
