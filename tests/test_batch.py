"""Batches on Dask (reprocess/batch.py): kill -9 and resume, workers and schedulers, manifests.

A programme of 8 small AORs (six 12-DCE 70 um, two 5-DCE 24 um) is reprocessed
once without interruption (the reference); every other way of running it must
give the same bytes, every file of ``bcd/`` included (the manifest too).
Runs that are killed go through ``mips reprocess`` in a subprocess of their
own session, killed with SIGKILL to the whole process group (workers
included); ``tests/hooks/sitecustomize.py`` slows the product writes (so a
kill lands where it is meant to) and journals each start of a folder's
pipeline (so "nothing complete was redone" is checked apart from the log).
Linux only (process groups, flock).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from astropy.io import fits

from mips.cli import main
from mipssim.config import load_config
from mipssim.observe import simulate
from reprocess.batch import MANIFEST_NAME, reprocess_many

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

REPO = str(Path(__file__).resolve().parents[1])
HOOKS = str(Path(__file__).resolve().parent / "hooks")
AORS = [f"aor{k}" for k in range(8)]
CLI = "import sys\nfrom mips.cli import main\nsys.exit(main(sys.argv[1:]))\n"
LEFTOVER = re.compile(r"(\.partial-|\.commit-|\.tmp$|^\.mips\.lock$|^bcd\.old$|^bcd\.partial$)")


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """(raw source folder of the 8 AORs, reference products {(aor, name): bytes})."""
    src = tmp_path_factory.mktemp("programme")
    for k, aor in enumerate(AORS):
        cfg = (load_config(band=24, n_dce=5, seed=20 + k) if k in (2, 6)
               else load_config(n_dce=12, seed=10 + k))
        simulate(cfg, src / aor)
        (src / aor / "truth.h5").unlink()                 # raw/ is all a reprocessing reads
    ref = tmp_path_factory.mktemp("reference")
    _copy(src, ref)
    assert main(["reprocess", *[str(ref / a) for a in AORS]]) == 0
    return src, _products(ref)


def _copy(src: Path, dst: Path, aors=AORS) -> list[str]:
    for aor in aors:
        shutil.copytree(src / aor / "raw", dst / aor / "raw")
    return [str(dst / aor) for aor in aors]


def _products(root: Path) -> dict:
    return {(p.parent.parent.name, p.name): p.read_bytes() for p in sorted(root.glob("*/bcd/*"))}


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if LEFTOVER.search(p.name)]


def _complete(root: Path) -> set[str]:
    return {aor for aor in AORS if (root / aor / "bcd" / MANIFEST_NAME).exists()}


def _committing(root: Path) -> set[str]:
    """AORs with a commit journal (killed mid-commit: the next writer rolls it forward)."""
    return {aor for aor in AORS if any(p.name.startswith("bcd.commit-") for p in (root / aor).iterdir())}


def _writing(root: Path, stale: set) -> bool:
    """A staging folder of this run (not in ``stale``, those of a killed run) holds products."""
    return any(any(p.rglob("*.fits")) for p in root.glob("*/bcd.partial-*") if p not in stale)


def _env(journal: Path, delay_s: float) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([HOOKS, REPO, os.environ.get("PYTHONPATH", "")]),
            "MIPS_TEST_WRITE_DELAY_S": str(delay_s), "MIPS_TEST_JOURNAL": str(journal)}


def _run(args, root: Path, journal: Path, *, kill_when=None, delay_s=0.02, timeout_s=300):
    """``mips reprocess ARGS`` in its own session; SIGKILL to its group once ``kill_when()``.

    Returns (exit status or None if killed, its stderr, the folders its pipeline started).
    """
    log_path = journal.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", CLI, "reprocess", *args], cwd=root,
                                env=_env(journal, delay_s), stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
        killed = False
        deadline = time.monotonic() + timeout_s
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if kill_when is not None and kill_when():
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and not killed:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = journal.read_text().splitlines() if journal.exists() else []
    started = [Path(line.split()[1]).name for line in lines]
    assert killed or proc.returncode is not None, "neither finished nor killed"
    return (None if killed else proc.returncode), log_path.read_text(), started


def _logged(text: str, what: str) -> set[str]:
    """AORs the batch log says were ``what`` ('skipped' or 'reprocessed')."""
    pattern = (r"reprocess\.batch: \S*?(aor\d): complete and valid .*: skipped" if what == "skipped"
               else r"reprocess\.batch: \S*?(aor\d): reprocessed \(")
    return set(re.findall(pattern, text))


def _kill_and_resume(programme, tmp_path, workers: int, kill_points):
    """Kill a batch at each of ``kill_points`` in turn, then let it finish; check each rerun."""
    src, reference = programme
    dirs = _copy(src, tmp_path)
    args = [*dirs, "--workers", str(workers)]
    complete: set = set()
    for step, kill_when in enumerate([*kill_points, None]):
        before, ambiguous = _complete(tmp_path), _committing(tmp_path)
        stale = set(tmp_path.glob("*/bcd.partial-*"))
        kill = (lambda k=kill_when, s=stale: k(tmp_path, s)) if kill_when else None
        status, log, started = _run(args, tmp_path, tmp_path / f"journal{step}", kill_when=kill)
        assert before >= complete                                    # nothing complete was undone
        skipped, redone = _logged(log, "skipped"), _logged(log, "reprocessed")
        assert not (set(started) & before), (started, before)        # no pipeline started on them
        assert not (redone & before) and skipped <= before | ambiguous, (redone, skipped, before)
        complete = _complete(tmp_path)
        if kill_when is None:                                        # the last run finishes
            assert status == 0, log
            assert skipped | ambiguous >= before and redone | skipped == set(AORS), log
        else:
            assert status is None and complete != set(AORS), "the kill came too late"
    assert _products(tmp_path) == reference
    assert _leftovers(tmp_path) == []


def _committed_at_least(n):
    return lambda root, stale: len(_complete(root)) >= n


def _writing_after(n):
    return lambda root, stale: len(_complete(root)) >= n and _writing(root, stale)


def test_kill_and_resume_in_process(programme, tmp_path):
    """One worker (this process): killed as the 1st folder commits, in the middle of the 4th,
    as the 6th commits, and in the middle of the last."""
    _kill_and_resume(programme, tmp_path, 1, [_committed_at_least(1), _writing_after(3),
                                              _committed_at_least(6), _writing_after(7)])


def test_kill_and_resume_local_cluster(programme, tmp_path):
    """Two dask worker processes: the process group killed after 2 folders, then mid-way."""
    _kill_and_resume(programme, tmp_path, 2, [_committed_at_least(2), _writing_after(7)])


@pytest.fixture
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.mark.parametrize("how", ["1", "2", "4", "scheduler"])
def test_products_do_not_depend_on_workers_or_scheduler(programme, tmp_path, how, request):
    src, reference = programme
    dirs = _copy(src, tmp_path, AORS[:4])                  # three 70 um folders and a 24 um one
    reference = {k: v for k, v in reference.items() if k[0] in AORS[:4]}
    if how == "scheduler":
        address = request.getfixturevalue("cluster").scheduler_address
        assert main(["reprocess", "--scheduler", address, *dirs]) == 0
    else:
        assert main(["reprocess", "--workers", how, *dirs]) == 0
    assert _products(tmp_path) == reference
    assert _leftovers(tmp_path) == []


def test_a_dead_worker_reruns_only_its_task(programme, tmp_path, monkeypatch):
    """SIGKILL to a worker half-way through its second folder: that folder is redone (dask
    retries the task; it cleans up after itself), the worker's first folder is not."""
    from distributed import LocalCluster
    src, reference = programme
    dirs = _copy(src, tmp_path)
    journal = tmp_path / "journal"
    for key, value in _env(journal, 0.05).items():
        monkeypatch.setenv(key, value)                      # inherited by the spawned workers
    victim: dict = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not victim:
            runs = [ln.split() for ln in journal.read_text().splitlines()] if journal.exists() else []
            for pid, folder in runs:
                mine = [Path(f).name for p, f in runs if p == pid]
                if len(mine) >= 2 and mine[0] in _complete(tmp_path) and mine[1] not in _complete(tmp_path):
                    victim.update(pid=int(pid), done=mine[0], killed_in=mine[1])
                    os.kill(int(pid), signal.SIGKILL)
                    return
            time.sleep(0.005)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        status = main(["reprocess", "--scheduler", c.scheduler_address, *dirs])
        killer.join()
    assert victim, "no worker was caught in the middle of its second folder"
    assert status == 0
    starts = [Path(ln.split()[1]).name for ln in journal.read_text().splitlines()]
    assert starts.count(victim["killed_in"]) == 2 and starts.count(victim["done"]) == 1
    assert sorted(starts) == sorted(AORS + [victim["killed_in"]])          # no other folder redone
    assert _products(tmp_path) == reference
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------- manifest checks

def _manifest(obs) -> dict:
    return json.loads((Path(obs) / "bcd" / MANIFEST_NAME).read_text())


def test_manifest_records_inputs_configuration_calibration_software(programme, tmp_path):
    import hashlib
    src, _ = programme
    (obs,) = _copy(src, tmp_path, ["aor0"])
    assert main(["reprocess", obs]) == 0
    m = _manifest(obs)
    raws = sorted((Path(obs) / "raw").iterdir())
    assert m["inputs"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in raws}
    assert m["config"]["jump_threshold"] == 4.5 and m["band"] == 70
    assert m["calibration"]["products"]["name"] == "mips70_cal.fits"
    assert set(m["software"]) >= {"package", "source_sha256", "numpy", "astropy"}
    products = sorted(p for p in (Path(obs) / "bcd").iterdir() if p.name != MANIFEST_NAME)
    assert m["products"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in products}
    assert m["outcome"] == {"n_bcd": 10, "n_stim": 2, "failures": []}


@pytest.mark.parametrize("change, why", [
    ("raw", "made from other raw files"),
    ("product", "missing or modified"),
    ("manifest", "without a manifest"),
])
def test_stale_products_are_refused_then_redone_with_overwrite(programme, tmp_path, capsys, change, why):
    src, reference = programme
    (obs,) = _copy(src, tmp_path, ["aor2"])
    bcd = Path(obs) / "bcd"
    assert main(["reprocess", obs]) == 0
    if change == "raw":
        raw = sorted((Path(obs) / "raw").iterdir())[1]
        with fits.open(raw, mode="update") as hdul:
            hdul[0].header["PA"] = 12.5
    elif change == "product":
        victim = min(bcd.glob("*_bcd.fits"))
        victim.write_bytes(victim.read_bytes()[:-2880])
    else:
        (bcd / MANIFEST_NAME).unlink()
    before = {p.name: p.read_bytes() for p in bcd.iterdir()}
    capsys.readouterr()
    assert main(["reprocess", obs]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and obs in err[0] and why in err[0] and "--overwrite" in err[0], err
    assert {p.name: p.read_bytes() for p in bcd.iterdir()} == before         # untouched
    assert main(["reprocess", obs, "--overwrite"]) == 0
    assert "BCDs written" in capsys.readouterr().out
    if change != "raw":
        assert _products(tmp_path) == {k: v for k, v in reference.items() if k[0] == "aor2"}


def test_keep_going_failures_are_reported_again_when_skipped(programme, tmp_path, capsys):
    src, _ = programme
    (obs,) = _copy(src, tmp_path, ["aor0"])
    bad = sorted((Path(obs) / "raw").iterdir())[4]
    bad.write_bytes(bad.read_bytes()[:5000])                 # truncated
    assert main(["reprocess", obs, "--keep-going"]) == 1
    first = capsys.readouterr()
    assert bad.name in first.err and "1 file(s) failed" in first.err
    assert main(["reprocess", obs, "--keep-going"]) == 1       # skipped, failures listed again
    again = capsys.readouterr()
    assert "skipped" in again.out and bad.name in again.err and "1 file(s) failed" in again.err
    assert main(["reprocess", obs]) == 2                       # without --keep-going: an error naming it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and bad.name in err[0] and "not a readable FITS file" in err[0], err


def test_reprocess_many_reports_skips(programme, tmp_path):
    src, _ = programme
    dirs = _copy(src, tmp_path, ["aor0", "aor2"])
    first = reprocess_many(dirs)
    assert [r.skipped for r in first] == [False, False]
    second = reprocess_many(dirs, overwrite=True)              # valid products are kept even so
    assert [r.skipped for r in second] == [True, True]
    assert [(r.n_bcd, r.n_stim) for r in second] == [(r.n_bcd, r.n_stim) for r in first]


def test_workers_with_a_scheduler_address_is_refused(tmp_path, capsys):
    assert main(["reprocess", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_ramps_file_does_not_depend_on_when_h5py_objects_are_freed(tmp_path, monkeypatch):
    """A profiler that samples the writer's frames (dask's workers run one) keeps h5py objects
    alive for a while; a chunked dataset closed late got its chunks elsewhere in ramps.h5.
    ``ramps.h5`` is written by :func:`reprocess.ramps_h5.fill` (in a child process): the same
    calls with every Dataset object kept alive until the file is closed give the same bytes."""
    import h5py
    import numpy as np

    from reprocess.ramps_h5 import fill

    rng = np.random.default_rng(5)
    arrays = {(kind, i): rng.normal(size=(4, 8, 8)) > 1.0 if kind == "jumps" else rng.normal(size=(8, 8))
              for i in range(12) for kind in ("slope", "slope_err", "jumps", "first_unusable", "flags")}
    dces = [{"stem": f"d{i:02d}", "i": i, "attrs": {"stim": bool(i % 6 == 0)}} for i in range(12)]
    stim = {"t": np.arange(3.0), "value": np.ones(3), "err": np.ones(3), "attrs": {"n_flashes": 3}}

    def write(path):
        with h5py.File(path, "w") as h5:
            fill(h5, {"calid": "x"}, dces, stim, arrays.__getitem__)
        return path.read_bytes()

    plain = write(tmp_path / "plain.h5")
    kept = []
    create = h5py.Group.create_dataset

    def create_and_keep(self, *args, **kwargs):
        dset = create(self, *args, **kwargs)
        kept.append(dset)                                  # freed only after the file is written
        return dset
    monkeypatch.setattr(h5py.Group, "create_dataset", create_and_keep)
    assert write(tmp_path / "kept.h5") == plain
    assert len(kept) == 5 * 12 + 3


def test_progress_bar_has_an_eta_and_log_lines_clear_it(caplog):
    import io
    import logging

    from mips.cli import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    term = Terminal()
    handler = logging.StreamHandler(term)
    logging.getLogger().addHandler(handler)
    try:
        bar = Progress("reprocess", stream=term)
        bar(10, 40)
        logging.getLogger("reprocess.batch").warning("a log line")
        bar(40, 40)
    finally:
        logging.getLogger().removeHandler(handler)
    text = term.getvalue()
    assert re.search(r"\[#+ +\]  25% \(10/40\) ETA +\d+m\d\ds", text), text
    assert "\r\x1b[Ka log line\n" in text and "100% (40/40)" in text
