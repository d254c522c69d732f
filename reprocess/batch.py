"""Whole programmes: many observation folders reprocessed on Dask, resumably.

A MIPS programme is tens to thousands of AORs, the Ge archive of order 10^7
DCEs; a run that long gets killed (a node reboots, a job hits its wall time,
a worker runs out of memory), so the batch must pick up where it stopped
without redoing, or half-redoing, anything.  The design and its trade-offs:

* **Unit of work: one observation folder.**  An AOR's DCEs share stim flashes
  and the time ordering the responsivity tracking needs, so an observation is
  the smallest independent piece; folders are independent, so the products do
  not depend on where, in what order or beside what else they were made
  (byte-identical for any number of workers and any scheduler).
* **Schedulers.**  One worker on this machine: the folders are reprocessed in
  this process, one after another -- what dask's synchronous scheduler would
  do, without starting anything, and with per-DCE progress.  Otherwise a
  ``dask.distributed`` client: a ``LocalCluster`` of ``workers`` processes
  with one thread each (each process holds one observation; the pipeline is
  numpy, partly GIL-bound), or the scheduler at a given address (its workers
  must see the same file system and have this package installed).  At most
  two tasks per worker thread are in flight, and each result is gathered
  and released as it completes: dask recomputes results lost with a dead
  worker (hats-import#539), so holding none makes a worker's death cost only
  the task it was running; and a failure without ``keep_going`` stops the
  submission (the folders already running finish).
* **Manifest.**  ``bcd/manifest.json`` is written into the staging folder
  and committed with the products in the same rename
  (:mod:`calibration.folders`): the sha256 of every raw file, the resolved
  configuration, the sha256 of the calibration products (and leak catalogue)
  used, the software (package version, a digest of the code that makes BCDs,
  numpy/scipy/astropy/h5py/HDF5 versions), the outcome (BCDs, stim DCEs used,
  files that failed under ``keep_going``) and the sha256 of every product.  It
  holds no times or host names, so it is as reproducible as the products.
* **Resume.**  A folder is complete and valid when its manifest matches what
  this run would write (inputs, configuration, calibration, software) and
  every product it lists is there with its checksum; it is then skipped, with
  or without ``overwrite`` (redoing it would give the same bytes).  Anything
  else is redone: at once where there are no products, and where stale
  products are in place only with ``overwrite``.  The check runs inside the
  task under the folder's lock, so a task that dask re-runs after its worker
  died finds that task's own commit and skips.  A killed run leaves staging
  folders, commit journals and lock files, which the next writer removes or
  rolls forward (:func:`calibration.folders.recover`) -- a rerun locks every
  folder it is given, so afterwards none is left.

Checksums cost a read of every raw file per rerun (about 1 GB/s of sha256 on
one core), against minutes of reprocessing per 1616-DCE observation.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from calibration.folders import FolderError, folder_lock, write_atomic
from calibration.products import default_products_path

from .ge_pipeline import ReprocessReport
from .io import InputError, _read_bytes, raw_files, software
from .pipeline import configure, options_for, run_pipeline

__all__ = ["MANIFEST_NAME", "Manifest", "Outcome", "reprocess_many", "reprocess_observation",
           "software_identity"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_FORMAT = "mips-reprocess-manifest/1"
_IN_FLIGHT_PER_THREAD = 2


# ----------------------------------------------------------------------------------------- manifest

@functools.cache
def software_identity() -> dict:
    """What made the products: package version, a digest of the BCD-making code, library versions.

    The digest covers every module of ``reprocess`` (top level and ``stim``)
    and ``calibration`` except this one, so an edited pipeline makes earlier
    products stale even when the version number did not move.
    """
    import astropy
    import h5py
    import numpy
    import scipy

    import calibration

    here = Path(__file__).resolve()
    digest = hashlib.sha256()
    for folder in (here.parent, here.parent / "stim", Path(calibration.__file__).resolve().parent):
        for path in sorted(folder.glob("*.py")):
            if path != here:
                digest.update(f"{folder.name}/{path.name}\0".encode())
                digest.update(path.read_bytes())
    return {"package": software(), "source_sha256": digest.hexdigest(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "astropy": astropy.__version__, "h5py": h5py.__version__,
            "hdf5": h5py.version.hdf5_version}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path) -> str | None:
    """sha256 of a file's bytes; None if it is missing (the pipeline then says so)."""
    try:
        return _sha256(Path(path).read_bytes())
    except FileNotFoundError:
        return None


def _input_checksums(paths) -> dict:
    """{raw file name: sha256} of the raw files ``paths`` (an unreadable entry: ``"unreadable: <why>"``)."""
    sums = {}
    for path in sorted(paths):
        try:
            sums[path.name] = _sha256(_read_bytes(path))
        except InputError as exc:
            sums[path.name] = f"unreadable: {exc.problem}"
    return sums


def _calibration_files(band: int, cfg) -> dict:
    """{role: {name, sha256}} of the calibration files the configuration points at."""
    files = {"products": cfg.products or default_products_path(band)}
    if getattr(cfg, "leak_catalog", None):
        files["leak_catalog"] = cfg.leak_catalog
    return {role: {"name": Path(p).name, "sha256": _file_sha256(p)} for role, p in files.items()}


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Manifest:
    """What a folder's products are made of; :meth:`write` commits it, :meth:`check` compares.

    ``content`` holds ``format``, ``software``, ``band``, ``config``,
    ``calibration`` and ``inputs``; the written file adds ``outcome`` and
    ``products``.  A multi-array run (``--band all``) records ``band`` as the list of
    its bands and ``config`` and ``calibration`` per band (keys "24", "70", "160"),
    ``inputs`` over every array's raw files: one manifest covers the whole ``bcd/``.
    """

    obs_dir: Path
    content: dict

    @classmethod
    def expected(cls, obs_dir, channels) -> Manifest:
        """The manifest a run of ``channels`` (:func:`reprocess.pipeline.configure`) would write
        for ``obs_dir`` now."""
        obs = Path(obs_dir)
        inputs = _input_checksums([p for ch in channels for p in ch.paths])
        if len(channels) == 1:
            ch = channels[0]
            return cls(obs, {"format": _FORMAT, "software": software_identity(), "band": int(ch.band),
                             "config": _jsonable(dataclasses.asdict(ch.config)),
                             "calibration": _calibration_files(ch.band, ch.config), "inputs": inputs})
        return cls(obs, {"format": _FORMAT, "software": software_identity(),
                         "band": [int(ch.band) for ch in channels],
                         "config": {str(ch.band): _jsonable(dataclasses.asdict(ch.config))
                                    for ch in channels},
                         "calibration": {str(ch.band): _calibration_files(ch.band, ch.config)
                                         for ch in channels},
                         "inputs": inputs})

    @property
    def bcd_dir(self) -> Path:
        return self.obs_dir / "bcd"

    def write(self, stage: Path, report: ReprocessReport) -> None:
        """Write the manifest of the complete staging folder ``stage`` (the pipeline's ``on_commit``)."""
        products = {p.name: _file_sha256(p) for p in sorted(stage.iterdir())
                    if p.is_file() and p.name != MANIFEST_NAME}
        outcome = {"n_bcd": report.n_bcd, "n_stim": report.n_stim,
                   "failures": sorted([Path(path).name, problem] for path, problem in report.failures)}
        doc = {**self.content, "outcome": outcome, "products": products}
        write_atomic(stage / MANIFEST_NAME, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    def check(self) -> tuple[str | None, dict | None]:
        """(None, recorded manifest) if ``bcd/`` is complete and valid, else (why not, None)."""
        path = self.bcd_dir / MANIFEST_NAME
        if self.bcd_dir.is_symlink():
            return "bcd is a symbolic link", None
        if not self.bcd_dir.is_dir():
            return "no products", None
        try:
            recorded = json.loads(path.read_text())
        except FileNotFoundError:
            return "products without a manifest", None
        except (OSError, ValueError) as exc:
            return f"unreadable manifest ({exc})", None
        if not isinstance(recorded, dict) or recorded.get("format") != _FORMAT:
            return "a manifest of another format", None
        for key, what in (("inputs", "raw files"), ("config", "configuration"),
                          ("calibration", "calibration products"), ("software", "software"),
                          ("band", "band")):
            if recorded.get(key) != self.content[key]:
                return f"made from other {what}: {_difference(recorded.get(key), self.content[key])}", None
        products = recorded.get("products")
        if not isinstance(products, dict) or not isinstance(recorded.get("outcome"), dict):
            return "a manifest without its products", None
        for name, digest in sorted(products.items()):
            if _file_sha256(self.bcd_dir / name) != digest:
                return f"product {name} missing or modified", None
        return None, recorded

    def skipped_report(self, recorded: dict) -> ReprocessReport:
        """The report of the run that made the (valid) products, from its manifest."""
        outcome = recorded["outcome"]
        raw = self.obs_dir / "raw"
        return ReprocessReport(out_dir=self.bcd_dir, n_bcd=outcome["n_bcd"], n_stim=outcome["n_stim"],
                               failures=[(str(raw / name), problem) for name, problem in outcome["failures"]],
                               skipped=True)


def _difference(old, new) -> str:
    """A short phrase naming what changed between two manifest entries."""
    if isinstance(old, dict) and isinstance(new, dict):
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{old!r} -> {new!r}"


# --------------------------------------------------------------------------------------------- task

@dataclass
class Outcome:
    """What became of one folder: its report (skipped or made) or the error that stopped it."""

    result: ReprocessReport | BaseException
    redone: str | None = None      # why it was (re)made; None when skipped or failed
    seconds: float = 0.0


def _holds_products(bcd: Path) -> bool:
    return bcd.is_dir() and not bcd.is_symlink() and any(bcd.iterdir())


def reprocess_observation(obs_dir, *, band=None, config_file=None, options: dict | None = None,
                          keep_going: bool = False, overwrite: bool = False, progress=None,
                          log_level: int | None = None) -> Outcome:
    """Reprocess one folder unless it is complete and valid: the task of :func:`reprocess_many`.

    Idempotent: run twice (or re-run by dask after a worker died), the second
    run finds the first one's commit and skips.  Errors on bad input are
    returned in the :class:`Outcome`, not raised; ``log_level`` configures
    logging in a worker process that has none.
    """
    if log_level is not None and not logging.getLogger().handlers:
        logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        options = options_for(obs_dir, options or {}, band=band)
        with folder_lock(obs_dir):
            channels = configure(obs_dir, config_file, options, band=band)
            manifest = Manifest.expected(obs_dir, channels)
            reason, recorded = manifest.check()
            if reason is None:
                report = manifest.skipped_report(recorded)
                if report.failures and not keep_going:
                    raise InputError(*report.failures[0])
                return Outcome(report, None, time.perf_counter() - t0)
            if not overwrite and _holds_products(manifest.bcd_dir):
                raise FileExistsError(f"{obs_dir}: already holds products ({reason}; use --overwrite "
                                      f"to replace them)")
            report = run_pipeline(obs_dir, channels, keep_going=keep_going, overwrite=overwrite,
                                  progress=progress, on_commit=manifest.write)
            return Outcome(report, reason, time.perf_counter() - t0)
    except (ValueError, OSError) as exc:        # InputError, FileExistsError, FolderError, ...
        return Outcome(exc, None, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------- scheduling

def _duplicates(obs_dirs) -> dict:
    """{index: error} for folders named again (by any path) after their first mention."""
    first: dict = {}
    errors = {}
    for i, d in enumerate(obs_dirs):
        key = os.path.realpath(d)
        if key in first:
            errors[i] = FolderError(f"{d}: the same folder as {obs_dirs[first[key]]}, named "
                                    f"earlier on the command line; reprocessed once")
        first.setdefault(key, i)
    return errors


def _n_raw(obs_dir) -> int:
    """Raw files in a folder (the unit of progress); 0 if it has none (its task says why)."""
    try:
        return len(raw_files(Path(obs_dir)))
    except (InputError, OSError):
        return 0


class _Tally:
    """Progress of a batch in raw DCEs: a skipped folder leaves the total, so the ETA counts work."""

    def __init__(self, obs_dirs, indices, progress):
        self.size = {i: _n_raw(obs_dirs[i]) for i in indices}
        self.total = sum(self.size.values())
        self.done = 0.0
        self.folders = 0
        self.n_folders = len(indices)
        self.progress = progress
        self.t0 = time.monotonic()

    def partial(self, i):
        """A per-DCE progress callable for folder ``i`` (in-process runs)."""
        if self.progress is None:
            return None
        return lambda done, total: self.progress(int(self.done + self.size[i] * done / max(total, 1)),
                                                 self.total)

    def finish(self, i, outcome: Outcome) -> str:
        """Count folder ``i`` as finished; return 'k/N folders, ETA ...' for the log."""
        if isinstance(outcome.result, ReprocessReport) and outcome.result.skipped:
            self.total -= self.size[i]
        else:
            self.done += self.size[i]
        self.folders += 1
        if self.progress is not None and self.total > 0:
            self.progress(int(self.done), self.total)
        return f"{self.folders}/{self.n_folders} folders, {self.eta()}"

    def eta(self) -> str:
        if self.done <= 0 or self.done >= self.total:
            return "ETA --" if self.done < self.total else "done"
        left = (time.monotonic() - self.t0) * (self.total - self.done) / self.done
        return f"ETA {int(left // 60)}m{int(left % 60):02d}s"


def _log_outcome(obs_dir, outcome: Outcome, where: str) -> None:
    """One INFO line per folder as it ends; a failure is the caller's to report (it is returned)."""
    res = outcome.result
    if isinstance(res, BaseException):
        log.info("%s: not reprocessed: %s [%s]", obs_dir, str(res).splitlines()[0] if str(res) else
                    type(res).__name__, where)
    elif res.skipped:
        log.info("%s: complete and valid (manifest matches its raw files, configuration, calibration "
                 "and software; checked in %.2f s): skipped [%s]", obs_dir, outcome.seconds, where)
    else:
        log.info("%s: reprocessed (%s): %d BCDs in %.1f s [%s]", obs_dir, outcome.redone, res.n_bcd,
                 outcome.seconds, where)


def reprocess_many(obs_dirs, *, scheduler: str | None = None, workers: int = 1, config_file=None,
                   keep_going: bool = False, overwrite: bool = False, progress=None, band=None,
                   **options) -> list:
    """Reprocess several observation folders on Dask, skipping those complete and valid.

    Parameters
    ----------
    obs_dirs : sequence of path
        Observation folders (``raw/`` in each; products go to ``bcd/``).
    scheduler : str, optional
        None or ``"local"``: this machine, ``workers`` processes (one: this
        process, folder after folder).  Otherwise the address of a
        ``dask.distributed`` scheduler (e.g. ``tcp://host:8786``), whose
        workers run the folders; they must see the same paths.
    workers : int
        Local worker processes (one thread each).
    config_file, options
        The pipelines' configuration (TOML file, then options), as in
        :func:`reprocess.pipeline.reprocess`.
    keep_going : bool
        Carry on past bad files and bad folders; otherwise the first failure
        (in the order given) is raised once the folders running have finished.
    overwrite : bool
        Replace stale products (made from other inputs, configuration,
        calibration or software, or without a manifest).  Complete and valid
        products are kept either way.
    progress : callable, optional
        ``progress(done, total)`` in raw DCEs still to reprocess.
    band : {None, 24, 70, 160, "all"}
        Which arrays of each folder (:func:`reprocess.pipeline.reprocess`): None its one
        array (a folder of several is refused), a band those files only, "all" every array.

    Returns
    -------
    list
        In the order given, each folder's ReprocessReport (``skipped`` True
        when it was complete) or the exception that stopped it.  A folder
        named twice is reprocessed once (the repeat is an error).

    Notes
    -----
    Paths (folders, ``config_file``, products) are handed to the workers as
    given: with a scheduler elsewhere, give absolute paths that the workers
    see.  dask starts local workers with the "spawn" method, so a script that
    calls this with ``workers > 1`` needs the ``if __name__ == "__main__":``
    guard.
    """
    obs_dirs = [str(d) for d in obs_dirs]
    if workers < 1:
        raise ValueError(f"option --workers: must be at least 1, not {workers}")
    local = scheduler in (None, "local")
    results: list = [None] * len(obs_dirs)
    for i, err in _duplicates(obs_dirs).items():
        results[i] = err
    todo = [i for i in range(len(obs_dirs)) if results[i] is None]
    tally = _Tally(obs_dirs, todo, progress)
    common = {"band": band, "config_file": config_file, "options": options,
              "keep_going": keep_going, "overwrite": overwrite}
    if local and (workers == 1 or len(todo) <= 1):
        outcomes = _run_here(obs_dirs, todo, tally, common)
    else:
        outcomes = _run_dask(obs_dirs, todo, tally, common, None if local else scheduler, workers)
    for i, outcome in outcomes.items():
        results[i] = outcome.result
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed and not keep_going:
        raise failed[0]
    return results


def _run_here(obs_dirs, todo, tally: _Tally, common) -> dict:
    """Folder after folder in this process (the first failure stops it without ``keep_going``)."""
    outcomes = {}
    for i in todo:
        outcome = reprocess_observation(obs_dirs[i], progress=tally.partial(i), **common)
        outcomes[i] = outcome
        where = tally.finish(i, outcome)
        _log_outcome(obs_dirs[i], outcome, where)
        if isinstance(outcome.result, BaseException) and not common["keep_going"]:
            break
    return outcomes


def _local_cluster(workers: int):
    """A LocalCluster of ``workers`` single-thread processes, without dask's malloc trim threshold.

    dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so that
    glibc hands freed memory back at once; the pipeline's numpy temporaries
    then cost a page fault per page every time: a 12-DCE 70 um folder took
    2.6x the CPU of this process (0.9 s of it system time).  An observation
    per task bounds a worker's memory anyway, so the glibc default is kept
    (the other variables -- one BLAS/OpenMP thread -- are; the compiled ramp
    kernel gets one thread per task, :func:`_task`).  distributed applies
    these variables to this process's ``os.environ`` as well when it spawns
    a worker; they are put back.  Workers of a scheduler started elsewhere
    are configured where they are started.
    """
    import dask
    from distributed import LocalCluster

    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):   # read by each Nanny
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=None, silence_logs=logging.ERROR)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _task(obs_dir, **kwargs) -> Outcome:
    """:func:`reprocess_observation` on a dask worker, with one ramp-kernel thread.

    The workers are the parallelism.  ``numba.set_num_threads`` (per calling
    thread) is used rather than ``NUMBA_NUM_THREADS``, which can only be set
    before numba's thread pool starts and would leak into this process.
    """
    _one_kernel_thread()
    return reprocess_observation(obs_dir, **kwargs)


def _one_kernel_thread() -> None:
    """The compiled ramp kernel, launched from this thread, uses one thread (if numba is here)."""
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(1)


def _run_dask(obs_dirs, todo, tally: _Tally, common, address, workers) -> dict:
    """On a dask.distributed cluster (local, or the scheduler at ``address``)."""
    from distributed import Client, KilledWorker, as_completed

    quiet = logging.getLogger("distributed")
    old_level = quiet.level
    quiet.setLevel(max(logging.WARNING, quiet.getEffectiveLevel()))   # its INFO lines are its own affair
    cluster = None
    if address is None:
        cluster = _local_cluster(min(workers, len(todo)))
        client = Client(cluster)
        where_run = f"{len(cluster.workers)} local worker processes"
    else:
        client = Client(address, timeout="30s")
        where_run = f"the dask scheduler at {address}"
    level = max(logging.getLogger().getEffectiveLevel(), logging.WARNING)
    outcomes: dict = {}
    try:
        threads = max(sum(client.nthreads().values()), 1)
        log.info("reprocessing %d folders (%d raw DCEs) on %s", len(todo), tally.total, where_run)
        queue = iter(todo)
        index: dict = {}
        running = as_completed()

        def submit_next() -> None:
            i = next(queue, None)
            if i is not None:
                fut = client.submit(_task, obs_dirs[i], log_level=level, pure=False,
                                    key=f"reprocess-{i}-{os.getpid()}-{time.time_ns()}", **common)
                index[fut.key] = i
                running.add(fut)

        for _ in range(_IN_FLIGHT_PER_THREAD * threads):
            submit_next()
        stop = False
        for fut in running:
            i = index.pop(fut.key)
            try:
                outcome = fut.result()
            except KilledWorker as exc:
                outcome = Outcome(FolderError(f"{obs_dirs[i]}: the worker reprocessing it died "
                                              f"repeatedly ({exc}); rerun to retry"))
            except Exception as exc:  # noqa: BLE001 -- a task's own errors come back in its Outcome
                outcome = Outcome(FolderError(f"{obs_dirs[i]}: the dask task failed "
                                              f"({type(exc).__name__}: {exc})"))
            fut.release()
            outcomes[i] = outcome
            _log_outcome(obs_dirs[i], outcome, tally.finish(i, outcome))
            stop = stop or (isinstance(outcome.result, BaseException) and not common["keep_going"])
            if not stop:
                submit_next()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        quiet.setLevel(old_level)
    return outcomes
