"""Reprocess one observation folder, whatever its array: dispatch on the raw files' CHNLNUM."""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from calibration.configuration import resolve
from calibration.folders import FolderError, folder_lock

from .ge_pipeline import ReprocessConfig, ReprocessReport, load_reprocess_config, reprocess_ge
from .io import majority_band, raw_files
from .si_pipeline import SiConfig, reprocess_si

__all__ = ["reprocess", "reprocess_many", "band_of"]

log = logging.getLogger(__name__)


def band_of(obs_dir: str | os.PathLike) -> int:
    """Band (24, 70, 160) of ``obs_dir``: that of most of its readable raw files.

    Deciding by the majority, not the first file, keeps a bad or foreign file
    from choosing the pipeline (the readers then refuse that file by name).
    """
    return majority_band(raw_files(Path(obs_dir)))


def reprocess(obs_dir, *, config_file=None, keep_going=False, overwrite=False, progress=None,
              **options) -> ReprocessReport:
    """Reprocess ``obs_dir``: the Ge pipeline for 70/160 um, the Si:As one for 24 um.

    ``options`` are parameters of that pipeline's configuration (None values ignored);
    ``config_file`` a TOML file of them (defaults < file < options).  The folder
    is locked from the first read to the commit (another writer is refused).
    """
    if not Path(obs_dir).is_dir():
        raw_files(Path(obs_dir))               # "no raw files to reprocess" names it
    with folder_lock(obs_dir):
        if band_of(obs_dir) == 24:
            return reprocess_si(obs_dir, config=resolve(SiConfig, config_file, options),
                                keep_going=keep_going, overwrite=overwrite, progress=progress)
        cfg = load_reprocess_config(config_file, **options)
        return reprocess_ge(obs_dir, config=cfg, keep_going=keep_going, overwrite=overwrite,
                            progress=progress)


# Options that belong to one pipeline, with the command-line flag that sets them.
_FLAGS = {"off": "--off", "keep_first_frame": "--keep-first-frame", "stim_mode": "--stim",
          "jump_threshold": "--jump-threshold", "leak_catalog": "--leak-catalog"}


def _options_for(obs_dir, options: dict) -> dict:
    """The options of ``obs_dir``'s pipeline; ValueError naming the folder for another band's."""
    band = band_of(obs_dir)
    cls = SiConfig if band == 24 else ReprocessConfig
    keys = {f.name for f in dataclasses.fields(cls)}
    foreign = [k for k, v in options.items() if k not in keys and v is not None]
    if foreign:
        flags = ", ".join(_FLAGS.get(k, k) for k in foreign)
        applies = "70 and 160 um" if band == 24 else "24 um"
        raise ValueError(f"{obs_dir}: {flags} applies to {applies} only, and this folder is "
                         f"{band} um")
    return {k: v for k, v in options.items() if k in keys}


def _one(obs_dir, config_file, overwrite, keep_going, options, progress=None):
    """One folder (:func:`reprocess` locks it); an error is returned, not raised."""
    try:
        return reprocess(obs_dir, config_file=config_file, keep_going=keep_going,
                         overwrite=overwrite, progress=progress, **_options_for(obs_dir, options))
    except (ValueError, OSError) as exc:        # InputError, FileExistsError, ... : reported per folder
        return exc


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: be killed when the parent process dies (Linux), never write on alone.

    ``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to this process when the
    thread that forked it ends; the workers are forked by the parent's main
    thread (the "fork" start method starts them all at once from it).  A
    parent that died before the call is caught by the ppid check.  Elsewhere
    the folder locks still keep a second run out, but an orphan may finish.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)


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


def reprocess_many(obs_dirs, *, workers: int = 1, config_file=None, keep_going: bool = False,
                   overwrite: bool = False, progress=None, **options) -> list:
    """Reprocess several observation folders, ``workers`` at a time (processes).

    Returns, in the order given, each folder's ReprocessReport or the exception
    that stopped it.  Without ``keep_going`` the first failure (in that order) is
    raised once the folders already running have finished.  Folders are
    independent, so the products do not depend on ``workers``.  ``progress``
    (a callable, see :func:`reprocess`) is used when running one at a time.
    A folder named twice is reprocessed once (the repeat is an error); worker
    processes die with the parent (:func:`_die_with_parent`).
    """
    obs_dirs = [str(d) for d in obs_dirs]
    repeats = _duplicates(obs_dirs)
    args = [(d, config_file, overwrite, keep_going, options) for d in obs_dirs]
    todo = [i for i in range(len(args)) if i not in repeats]
    results: list = [repeats.get(i) for i in range(len(args))]
    if workers <= 1 or len(todo) <= 1:
        for i in range(len(args)):
            if i in todo:
                results[i] = _one(*args[i], progress=progress)
            if isinstance(results[i], Exception) and not keep_going:
                raise results[i]
        return results
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_worker_context(),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {i: pool.submit(_one, *args[i]) for i in todo}
        for i, fut in futures.items():
            try:
                results[i] = fut.result()
            except BrokenProcessPool as exc:
                results[i] = FolderError(f"{obs_dirs[i]}: the worker process died ({exc})")
    failed = [r for r in results if isinstance(r, Exception)]
    if failed and not keep_going:
        raise failed[0]
    return results


def _worker_context():
    """Processes forked from this (main) thread, so that their parent-death signal is tied to it."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return None
