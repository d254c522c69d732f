"""Safe writing of an observation folder: one writer at a time, all-or-nothing commits, recovery.

Both halves write into an observation folder (the simulator ``raw/`` and
``truth.h5``, the reprocessor ``bcd/``), so the rules live here, in the one
package both may import.  The trade-offs:

* **Lock.**  A writer holds an exclusive ``flock`` on ``<folder>/.mips.lock``
  for its whole run; a second writer is refused at once (no waiting: a batch
  that queued behind a long run would look hung) with a message naming the
  folder and the holder's pid.  The kernel releases the lock when its holder
  dies, however it dies, so a lock can never be stale.  The lock file is
  removed on release; a waiter that opened the removed file notices (its inode
  is no longer the path's) and retries.  ``flock`` is advisory and, on NFS,
  only as good as the server's lock support.
* **Staging.**  Outputs are written into ``<folder>/<purpose>.partial-<random>/``,
  unique per run, and only moved into place when complete.  Whatever is found
  named ``*.partial-*`` by a writer that holds the lock belongs to a run that
  died (a live one would hold the lock), so it is removed.
* **Commit.**  Several items (``raw/`` and ``truth.h5``) cannot be renamed
  into place in one system call, so a commit is a small journal: the complete
  staging folder is renamed to ``<purpose>.commit-<random>/`` (atomic: a commit
  folder is complete by construction), then each old item is moved into its
  ``.old/`` and each new one into the folder, and finally the journal is
  renamed back to a staging name (inert: never replayed over newer items) and
  deleted.  A run killed half-way leaves the journal; the next writer to take
  the lock rolls it forward before doing anything else, so readers that take
  the lock never see old and new items mixed.  This protects against a killed
  process; against power loss it would also need every file fsync'ed.
* **Disk full.**  A write that fails with ENOSPC, EDQUOT or EFBIG becomes a
  one-line :class:`FolderError` naming the folder; the staging folder is
  removed and nothing in place changes.  HDF5 files are built in memory and
  written with plain Python I/O (:func:`hdf5_file`), because the HDF5 library
  may crash (SIGSEGV) when its own writes fail.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FolderError", "LOCK_NAME", "expand_inputs", "folder_lock", "hdf5_file",
           "hdf5_in_memory",
           "write_hdf5_image", "write_atomic", "transaction"]

log = logging.getLogger(__name__)

LOCK_NAME = ".mips.lock"
_STAGE = re.compile(r"^[A-Za-z0-9_]+\.partial-[A-Za-z0-9_]+$")
_COMMIT = re.compile(r"^[A-Za-z0-9_]+\.commit-[A-Za-z0-9_]+$")
_LEGACY = ("bcd.partial", "bcd.old")      # fixed staging names of earlier versions
_OLD = ".old"                             # inside a journal: the items being replaced
_REMOVE = ".remove"                       # inside a journal: names of items to delete
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_held: dict = {}                          # realpath -> [pid, fd, depth] of the locks this process holds


class FolderError(OSError):
    """An observation folder that cannot be written now; ``str()`` is one line naming it."""


@contextmanager
def folder_lock(folder: str | os.PathLike):
    """Hold ``folder``'s writer lock (re-entrant within a process); refuse at once if another holds it.

    On first acquisition, a commit left half-done by a dead writer is rolled
    forward and dead writers' staging folders are removed.

    Raises
    ------
    FolderError
        Another process holds the lock, or the lock file cannot be created.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    held = _held.get(key)
    if held and held[0] == os.getpid():
        held[2] += 1
        try:
            yield
        finally:
            held[2] -= 1
        return
    fd = _acquire(folder)
    _held[key] = [os.getpid(), fd, 1]
    try:
        recover(folder)
        yield
    finally:
        del _held[key]
        try:
            os.unlink(folder / LOCK_NAME)      # still ours: removed while held, then released
        except OSError:
            pass
        os.close(fd)


def _acquire(folder: Path) -> int:
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise FolderError(f"{folder}: cannot create the lock file {LOCK_NAME} "
                              f"({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").split()
            os.close(fd)
            pid = f" (pid {holder[0]})" if holder else ""
            raise FolderError(f"{folder}: another run{pid} holds this folder's lock; "
                              f"try again when it has finished") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)                         # the holder removed the file as we opened it: retry


def holds_lock(folder: str | os.PathLike) -> bool:
    """True if this process holds ``folder``'s lock."""
    held = _held.get(os.path.realpath(folder))
    return bool(held) and held[0] == os.getpid()


def recover(folder: str | os.PathLike) -> None:
    """Roll forward dead writers' commits and remove their staging folders (lock held)."""
    folder = Path(folder)
    entries = sorted(folder.iterdir(), key=lambda p: p.lstat().st_mtime_ns)
    for entry in entries:
        if _COMMIT.match(entry.name) and _is_real_dir(entry):
            log.warning("%s: finishing a commit interrupted earlier", entry)
            _roll_forward(folder, entry)
    for entry in entries:
        if _STAGE.match(entry.name) and _is_real_dir(entry):
            log.warning("%s: removing the staging folder of a run that died", entry)
            shutil.rmtree(entry, ignore_errors=True)
    legacy_old = folder / "bcd.old"
    if _is_real_dir(legacy_old) and not os.path.lexists(folder / "bcd"):
        os.rename(legacy_old, folder / "bcd")        # an earlier version died between its renames
    for name in _LEGACY:
        if _is_real_dir(folder / name):
            log.warning("%s: removing a staging folder left by an earlier version", folder / name)
            shutil.rmtree(folder / name, ignore_errors=True)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


@contextmanager
def transaction(folder: str | os.PathLike, purpose: str, *, replace: tuple[str, ...],
                overwrite: bool, what: str, create: bool = False):
    """Lock ``folder``, yield an empty staging folder, and commit it as a whole on success.

    Parameters
    ----------
    folder : path
        The observation folder.
    purpose : str
        Names the staging folder (``<purpose>.partial-*``) and appears in errors.
    replace : tuple of str
        The folder's entries this run produces: at commit, each is replaced by
        the staging folder's entry of that name, or removed if it has none.
    overwrite : bool
        Without it, an entry of ``replace`` that exists (a non-empty folder or
        a file) is refused with FileExistsError.
    what : str
        What those entries are, for that message (e.g. ``"an observation"``).
    create : bool
        Create ``folder`` if needed (removed again if the run fails and it is empty).

    Raises
    ------
    FileExistsError, FolderError
        Existing output without ``overwrite``; a symbolic link where an entry
        of ``replace`` goes; another writer; no space left.
    """
    folder = Path(folder)
    created = create and not folder.exists()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(folder):
            _check_replaceable(folder, replace, overwrite, what)
            stage = Path(tempfile.mkdtemp(prefix=f"{purpose}.partial-", dir=folder))
            try:
                yield stage
            except BaseException as exc:
                shutil.rmtree(stage, ignore_errors=True)
                if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
                    raise FolderError(f"{folder}: {os.strerror(exc.errno).lower()} while writing "
                                      f"the {purpose}; nothing was changed") from None
                raise
            _commit(folder, stage, purpose, replace)
    except BaseException:
        if created:
            _remove_if_empty(folder)
        raise


def _check_replaceable(folder: Path, replace, overwrite: bool, what: str) -> None:
    for name in replace:
        path = folder / name
        if path.is_symlink():
            raise FolderError(f"{path}: is a symbolic link; refusing to replace it (remove the "
                              f"link, or run on the folder it points into)")
        if not overwrite and path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{folder}: already holds {what} ({name}; use --overwrite "
                                  f"to replace it)")


def _commit(folder: Path, stage: Path, purpose: str, replace) -> None:
    """Turn the complete ``stage`` into a journal and carry it out."""
    removed = [n for n in replace if not os.path.lexists(stage / n)]
    (stage / _REMOVE).write_text("".join(f"{n}\n" for n in removed))
    journal = stage.with_name(stage.name.replace(".partial-", ".commit-", 1))
    os.rename(stage, journal)
    try:
        _roll_forward(folder, journal)
    except OSError as exc:
        raise FolderError(f"{folder}: could not finish committing the {purpose} "
                          f"({exc.strerror}); the next run on this folder will") from None


def _roll_forward(folder: Path, journal: Path) -> None:
    """Carry out a commit journal (idempotent: safe to repeat after a crash at any point)."""
    old = journal / _OLD
    old.mkdir(exist_ok=True)
    marker = journal / _REMOVE
    removed = marker.read_text().split() if marker.exists() else []
    new = [p.name for p in journal.iterdir() if p.name not in (_OLD, _REMOVE)]
    for name in itertools.chain(removed, new):
        if os.path.lexists(folder / name) and (name in removed or os.path.lexists(journal / name)):
            os.rename(folder / name, _free_name(old / name))
        if name in new and os.path.lexists(journal / name):
            os.rename(journal / name, folder / name)
    trash = journal.with_name(journal.name.replace(".commit-", ".partial-", 1))
    os.rename(journal, trash)                # done: from now on only stale staging to delete
    shutil.rmtree(trash, ignore_errors=True)


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with a numbered suffix if that exists already."""
    candidates = itertools.chain([path], (path.with_name(f"{path.name}.{i}") for i in itertools.count(1)))
    return next(p for p in candidates if not os.path.lexists(p))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def hdf5_in_memory(name: str):
    """An empty HDF5 file held in memory (``driver='core'``, no backing store); see :func:`hdf5_file`."""
    import h5py

    return h5py.File(f"{name}.{os.getpid()}.{id(name)}.inmemory", "w", driver="core",
                     backing_store=False)


def write_hdf5_image(h5, path: str | os.PathLike) -> None:
    """Close the in-memory file ``h5`` and write it to ``path`` in one Python write (atomically)."""
    try:
        h5.flush()
        image = h5.id.get_file_image()
    finally:
        h5.close()
    write_atomic(path, image)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp`` and a rename; a failed write leaves nothing.

    One Python write: a full disk is an OSError with its errno (ENOSPC, EFBIG),
    whatever library made the bytes.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def hdf5_file(path: str | os.PathLike):
    """An HDF5 file built in memory and written to ``path`` on success (atomically, via ``.tmp``).

    The HDF5 library writes through its own C I/O; when such a write fails (a
    full disk) h5py may report errors from object destructors and then crash
    with SIGSEGV.  Built in memory (``driver='core'`` without a backing
    store), the file reaches the disk in one Python write, whose failure is an
    ordinary OSError.  Costs the file's size in memory (ramps.h5: ~40 kB per
    70 um DCE).
    """
    h5 = hdf5_in_memory(str(path))
    try:
        yield h5
    except BaseException:
        h5.close()
        raise
    write_hdf5_image(h5, path)


def expand_inputs(inputs, find, *, none_found: str) -> list[Path]:
    """Files named in ``inputs``, each folder among them replaced by ``find(folder)`` (a list).

    FileNotFoundError naming the item for a folder where ``find`` finds nothing
    (``"<folder>: <none_found>"``) or an item that does not exist.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = find(item)
            if not found:
                raise FileNotFoundError(f"{item}: {none_found}")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files
