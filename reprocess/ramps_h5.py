"""Writing ``ramps.h5`` (every DCE's slope, error, jumps, and the stim table) without holding it.

``ramps.h5`` grows with the observation (~42 kB per 70 um DCE: 68 MB for a 1616-DCE scan map).
It used to be built in memory (HDF5's ``core`` driver) and written in one Python write, because
the HDF5 library crashes (SIGSEGV) when one of its own writes fails on a full disk
(:func:`calibration.folders.hdf5_file`); that costs twice the file's size in memory at the end.
Here the file is written by HDF5 straight to disk (its ``sec2`` driver, whose files are
byte-identical to the ``core`` driver's image for the same calls) in a **child process** that
reads the arrays from the parent's :class:`~reprocess.spill.Spill` (the file descriptor is
inherited): the memory stays that of one DCE, and if a write fails and the library crashes, only
the child dies.  The parent then raises the child's errno (``ENOSPC``, ``EFBIG``, ... from the
HDF5 error message) as an OSError, which :func:`calibration.folders.transaction` turns into the
one-line "no space left" error, and no partial file is left.

The file is written to ``<name>.tmp`` and renamed when complete.  The HDF5 calls are those of
:func:`fill`, in the same order for any observation, so the bytes do not depend on how the
pipeline batched its DCEs.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["fill", "write_ramps_file"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_ERRNO = re.compile(r"errno = (\d+)")


def fill(h5, head: dict, dces: list, stim: dict, get) -> None:
    """The HDF5 calls that make ``ramps.h5`` in the open file ``h5``.

    ``head``: the file's attributes; ``dces``: per DCE (time order) a dict with
    ``stem``, ``i`` (its index in the spill keys) and ``attrs``; ``stim``: the
    stim table's arrays (``t``, ``value``, ``err``) and ``attrs``; ``get(key)``:
    the spilled array of ``key``.
    """
    for key, value in head.items():
        h5.attrs[key] = value
    for d in dces:
        g = h5.create_group(f"dce/{d['stem']}")
        g.create_dataset("slope_dn_s", data=get(("slope", d["i"])))
        g.create_dataset("slope_err_dn_s", data=get(("slope_err", d["i"])))
        # compressed chunks wait in the dataset's chunk cache until it is flushed or closed;
        # flushed now, their place in the file does not depend on when Python frees the
        # Dataset object -- dask's sampling profiler, in its workers, may hold it: ramps.h5 is
        # byte-identical for any worker count
        g.create_dataset("jumps", data=get(("jumps", d["i"])), compression="gzip").flush()
        g.create_dataset("first_unusable_read", data=get(("first_unusable", d["i"])))
        g.create_dataset("flags", data=get(("flags", d["i"])))
        for key, value in d["attrs"].items():
            g.attrs[key] = value
    h5.create_dataset("stim/t_mjd", data=stim["t"])
    h5.create_dataset("stim/response_dn_s", data=stim["value"])
    h5.create_dataset("stim/response_err_dn_s", data=stim["err"])
    for key, value in stim["attrs"].items():
        h5["stim"].attrs[key] = value


def write_ramps_file(path: str | os.PathLike, spill, head: dict, dces: list, stim: dict) -> None:
    """Write ``ramps.h5`` at ``path`` from ``spill`` in a child process (module notes).

    Raises OSError with the failed write's errno (e.g. ENOSPC) if the child
    reports one, RuntimeError naming ``path`` for any other failure.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    spec = {"path": str(tmp), "fd": spill.fd, "index": spill.index, "head": head, "dces": dces,
            "stim": stim}
    code = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from reprocess.ramps_h5 import _child; _child()")
    try:
        res = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(spec),
                             capture_output=True, pass_fds=(spill.fd,), check=False)
        if res.returncode != 0:
            err = res.stderr.decode("utf-8", "replace")
            found = _ERRNO.findall(err)
            if found and int(found[-1]) in errno.errorcode:
                code_ = int(found[-1])
                raise OSError(code_, os.strerror(code_), str(path))
            last = err.strip().splitlines()[-1] if err.strip() else f"exit status {res.returncode}"
            raise RuntimeError(f"{path}: writing failed ({last})")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _child() -> None:
    """The child process: read the spec from stdin, write the file, exit 0."""
    import h5py

    from reprocess.spill import Spill

    spec = pickle.load(sys.stdin.buffer)
    spill = Spill.attach(spec["fd"], spec["index"])
    try:
        with h5py.File(spec["path"], "w") as h5:
            fill(h5, spec["head"], spec["dces"], spec["stim"], spill.get)
    except OSError as exc:        # h5py's own error: report its errno the way HDF5 would
        print(f"OSError: errno = {exc.errno}: {exc}", file=sys.stderr)
        sys.exit(3)
