"""Run independent chunks of work in parallel with dask: the simulator's one parallel driver.

A scan map is simulated in chunks of consecutive DCEs, each a pure function of
its arguments (the configuration, its DCEs' plans and the state they start
from, :mod:`.carry`) that writes its own files; nothing flows between chunks,
so any scheduler may run them in any order and the files are the same.

:func:`run_chunks` is kept to one function so that one place can route every
parallel run of the toolkit later.  Without a client it uses dask's
``processes`` scheduler on a pool of ``workers`` processes forked from the
caller's main thread, each killed by the kernel when the parent dies (Linux
``PR_SET_PDEATHSIG``, as ``reprocess.pipeline`` does), so a killed
``mips simulate`` leaves nothing writing; tasks are dispatched one at a time
(dask batches 6 by default, which would leave a worker idle at the end).  With
a ``dask.distributed`` client the chunks run on its cluster, whose workers must
see the output folder.  Each result is handed to the caller as its chunk
finishes, so the caller can gather the chunks' output while the rest run.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

__all__ = ["run_chunks"]

log = logging.getLogger(__name__)


def run_chunks(func: Callable, chunks: Sequence, *, workers: int = 1, client=None,
               on_result: Callable[[int, object], None] | None = None) -> list:
    """``[func(chunk) for chunk in chunks]``, computed in parallel with dask.

    Parameters
    ----------
    func : callable
        A module-level function (pickled by reference).
    chunks : sequence
        Picklable arguments, one task each.
    workers : int
        Processes of the local pool (ignored with ``client``).
    client : dask.distributed.Client, optional
        Run on this cluster instead.
    on_result : callable, optional
        Called in this process as ``on_result(index, result)`` as each chunk finishes (in the
        order they finish): progress, or collecting the chunks' output while others run.  An
        exception it raises stops the run.

    Returns
    -------
    list
        The results in the order of ``chunks``.  The first exception a chunk raises is raised
        (after the running chunks have finished).
    """
    import dask
    import dask.multiprocessing
    from dask.callbacks import Callback

    keys = [f"chunk-{i}" for i in range(len(chunks))]
    tasks = [dask.delayed(func, pure=False)(chunk, dask_key_name=key) for key, chunk in zip(keys, chunks)]
    index = {key: i for i, key in enumerate(keys)}

    def finished(key, result, *_):
        if on_result is not None and key in index:
            on_result(index[key], result)

    if client is not None:
        from distributed import as_completed
        futures = client.compute(tasks)
        for fut in as_completed(futures):
            finished(fut.key, fut.result())
        return client.gather(futures)
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool, Callback(posttask=finished):
        # the "processes" scheduler's own get (the name would import distributed, ~2 s, to look
        # for a client)
        return list(dask.compute(*tasks, scheduler=dask.multiprocessing.get, pool=pool,
                                 num_workers=workers, chunksize=1))


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: be killed when the parent process dies (Linux), never write on alone
    (the same as ``reprocess.pipeline._die_with_parent``, which mipssim may not import)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:       # 1 = PR_SET_PDEATHSIG
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)
