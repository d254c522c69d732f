"""Test hooks for subprocesses (and the dask worker processes they spawn), set by environment.

Put this folder on PYTHONPATH; with neither variable set nothing is imported.

* ``MIPS_TEST_WRITE_DELAY_S``: sleep this long before each product file is written
  (``reprocess.io.write_image``), so a test can kill a run at a chosen moment.
* ``MIPS_TEST_JOURNAL``: append ``<pid> <folder>`` to this file each time a pipeline
  opens a folder's staging transaction (a reprocessing started), so a test can
  count how often each folder was (re)done.
"""
import os

if os.environ.get("MIPS_TEST_WRITE_DELAY_S") or os.environ.get("MIPS_TEST_JOURNAL"):
    import time

    import reprocess.io as _rio

    _delay = float(os.environ.get("MIPS_TEST_WRITE_DELAY_S") or 0.0)
    _journal = os.environ.get("MIPS_TEST_JOURNAL")
    _write, _transaction = _rio.write_image, _rio.transaction

    def _slow_write(*args, **kwargs):
        time.sleep(_delay)
        return _write(*args, **kwargs)

    def _journalled(folder, *args, **kwargs):
        if _journal:
            fd = os.open(_journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{os.getpid()} {os.path.realpath(folder)}\n".encode())
            finally:
                os.close(fd)
        return _transaction(folder, *args, **kwargs)

    if _delay:
        _rio.write_image = _slow_write
    _rio.transaction = _journalled
