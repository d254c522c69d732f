"""Per-DCE arrays kept on disk, not in memory, between the passes of a pipeline over an observation.

The Ge pipeline needs every DCE's slope more than once: the stim flashes are measured against
their sky DCEs (which may lie anywhere in the observation), and only then can any DCE be
calibrated; ``ramps.h5`` is written last.  Holding the slopes, their errors, the jump flags and
the headers of every DCE costs ~45 kB per 70 um DCE and grows with the observation; a
:class:`Spill` writes them, as they are made, into an unlinked temporary file beside the products
(same file system, so the space scales with the products and a full disk is the same clean error)
and reads each back on demand.  The bytes read back are those written, so the products do not
depend on whether an array was spilled.  Memory then holds only the small side tables (times,
pointings, the stim table) and a bounded cache of recently read maps (:class:`SpilledMaps`).

Trade-off: a read costs a system call (~10 us) where an in-memory array costs nothing; the
pipeline reads each map a few times, so this is seconds per thousands of DCEs, against hundreds
of MB.
"""
from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import numpy as np

__all__ = ["Spill", "SpilledMapping", "SpilledMaps"]


class Spill:
    """Arrays stored by key in an unlinked temporary file in ``folder`` (gone when closed or when
    the process dies).  Use as a context manager."""

    def __init__(self, folder: str | os.PathLike | None, *, _fd: int | None = None, _index=None):
        if _fd is None:
            self._file = tempfile.TemporaryFile(dir=Path(folder))   # noqa: SIM115 -- closed by close()
            self._fd = self._file.fileno()
        else:                              # a reader in another process (:meth:`attach`)
            self._file, self._fd = None, _fd
        self._index: dict = {} if _index is None else _index
        self._end = 0

    @classmethod
    def attach(cls, fd: int, index: dict) -> Spill:
        """A reader of another process's spill: its file descriptor (inherited) and :attr:`index`."""
        return cls(None, _fd=fd, _index=index)

    @property
    def fd(self) -> int:
        """The spill file's descriptor (for a child process to inherit)."""
        return self._fd

    @property
    def index(self) -> dict:
        """key -> (offset, dtype, shape) of every stored array."""
        return self._index

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def put(self, key, array: np.ndarray) -> None:
        """Store ``array`` (any dtype and shape; a copy of its bytes) under ``key``."""
        a = np.ascontiguousarray(array)
        data = memoryview(a.reshape(-1).view(np.uint8)) if a.size else memoryview(b"")
        offset = self._end
        done = 0
        while done < len(data):             # pwrite may write less than asked
            done += os.pwrite(self._fd, data[done:], offset + done)
        self._index[key] = (offset, a.dtype, a.shape)
        self._end = offset + len(data)

    def get(self, key) -> np.ndarray:
        """The array stored under ``key`` (a new, writable array)."""
        offset, dtype, shape = self._index[key]
        out = np.empty(shape, dtype=dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(bytearray())
        done = 0
        while done < len(buf):
            n = os.preadv(self._fd, [buf[done:]], offset + done)
            if n == 0:
                raise OSError(f"spill file ended early reading {key!r}")
            done += n
        return out

    def __contains__(self, key) -> bool:
        return key in self._index


class SpilledMaps:
    """A read-only ``(N, NY, NX)`` stack whose planes live in a :class:`Spill`: ``maps[i]`` for an
    integer ``i`` reads plane ``i`` back (the last ``cache`` planes read are kept).

    Only integer indexing and ``shape`` are offered: what the stim code uses of its
    ``slopes``/``errs`` arguments.  ``nan_where`` (a (NY, NX) bool map) sets those pixels NaN.
    """

    def __init__(self, spill: Spill, name: str, n: int, frame: tuple, *, nan_where=None,
                 cache: int = 512):
        self._spill, self._name = spill, name
        self.shape = (int(n),) + tuple(frame)
        self._nan_where = nan_where
        self._cache: OrderedDict = OrderedDict()
        self._size = cache

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        i = int(i)
        if not -self.shape[0] <= i < self.shape[0]:
            raise IndexError(f"plane {i} of {self.shape[0]}")
        i %= self.shape[0]
        plane = self._cache.get(i)
        if plane is None:
            plane = self._spill.get((self._name, i))
            if self._nan_where is not None:
                plane = np.where(self._nan_where, np.nan, plane)
            plane.flags.writeable = False
            self._cache[i] = plane
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return plane


class SpilledMapping(Mapping):
    """A read-only mapping whose values are rebuilt from a :class:`Spill` on each access:
    ``build(spill, key)`` makes the value of ``key`` (one of ``keys``)."""

    def __init__(self, spill: Spill, keys, build):
        self._spill, self._keys, self._build = spill, list(keys), build
        self._known = set(self._keys)

    def __getitem__(self, key):
        if key not in self._known:
            raise KeyError(key)
        return self._build(self._spill, key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key) -> bool:
        return key in self._known
