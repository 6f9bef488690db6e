"""Run per-trace work on a Dask cluster (``--dask ADDRESS`` or ``--dask local``).

The unit of work is one capture file: MPTCP state spans the subflows of one capture, so a file is
never split. :class:`DaskExecutor` is an :class:`analyzer.ci.check.Executor`, so ``check`` and
``summarise`` run the very same per-trace functions here as in one process or under ``--jobs``.

dask is optional: it is imported only when a cluster is asked for, and :func:`require` turns its
absence into one clear message.
"""

from __future__ import annotations

import importlib
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console

from analyzer.ci.check import Lost

LOCAL = "local"
CONNECT_TIMEOUT = "15s"  # a scheduler that does not answer by then is unreachable
RETRIES = 1  # a trace whose worker dies is run once more, then reported as an input error
INSTALL_HINT = "pip install 'mptcp-analyze[dask]'"

_Item = TypeVar("_Item")
_Out = TypeVar("_Out")
Progress = Callable[[int, int], None]  # (done, total)


class ClusterError(Exception):
    """dask is missing or the scheduler cannot be reached: one line for the user, exit 2."""


def require() -> Any:
    """The ``distributed`` module (untyped to us), or one line saying it is not installed."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise ClusterError(f"--dask needs dask.distributed, which is not installed ({INSTALL_HINT})") from None


@contextmanager
def connect(address: str, workers: int | None = None) -> Iterator[Any]:
    """A client of the scheduler at ``address``, or of a LocalCluster of ``workers`` processes for ``local``.

    The LocalCluster lets a task's worker die once (``allowed-failures`` 0: the scheduler gives up at the
    first death, :class:`DaskExecutor` resubmits once) and queues one task per worker thread, so a dying
    trace is the only task running on its worker and no innocent one is blamed with it. Worker profiling
    is off (it samples stacks every 10 ms).
    """
    distributed = require()
    if address == LOCAL:
        config = {
            "distributed.scheduler.allowed-failures": 0,
            "distributed.scheduler.worker-saturation": 1.0,
            # the analysis is pure Python: a stack-sampling profiler every 10 ms would take a share of its CPU
            "distributed.worker.profile.enabled": False,
        }
        dask_config = importlib.import_module("dask.config")
        with dask_config.set(config), distributed.LocalCluster(
            n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its health routes: any free loopback port
        ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            yield client
        return
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        yield client


class DaskExecutor:
    """Maps a function over items on a Dask cluster; results in input order, lost items as :class:`Lost`.

    A task whose worker died (``KilledWorker``) is resubmitted ``retries`` times, each retry alone on the
    cluster (a death fails every task the worker held, so only a lone retry proves which trace killed it);
    after that the item is :class:`Lost` (an input error for the caller). A task that raised is
    :class:`Lost` as internal.
    ``progress`` is called from the cluster's completions, in completion order.
    """

    def __init__(self, client: Any, progress: Progress | None = None, retries: int = RETRIES) -> None:
        self.client = client
        self.progress = progress
        self.retries = retries

    def __call__(self, fn: Callable[[_Item], _Out], items: Sequence[_Item], /) -> Iterator[_Out | Lost]:
        return self._run(fn, items)

    def _run(self, fn: Callable[[_Item], _Out], items: Sequence[_Item]) -> Iterator[_Out | Lost]:
        as_completed = require().as_completed
        if not items:
            return
        prefix = f"mptcp-analyze-{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex[:8]}"
        keys = [f"{prefix}-{i}-0" for i in range(len(items))]
        futures = self.client.map(fn, items, key=keys, pure=False)
        origin: dict[str, tuple[int, int]] = {key: (i, 0) for i, key in enumerate(keys)}  # key -> (item, attempt)
        pending = {future.key: future for future in futures}
        done: dict[int, _Out | Lost] = {}
        waiting: deque[tuple[int, int]] = deque()  # (item, attempt) to retry once the cluster is idle
        following = finished = 0
        # results travel with the completions: a finished result left on a worker that then dies
        # would be recomputed (the trace analysed twice) before we could fetch it
        completions = as_completed(futures, with_results=True, raise_errors=False)
        try:
            for future, value in completions:
                pending.pop(future.key, None)
                index, attempt = origin.pop(future.key)
                out = self._outcome(future, value, attempt)
                future.release()
                if out is None:  # the worker died: once more, alone, under a new key
                    waiting.append((index, attempt + 1))
                else:
                    done[index] = out
                    finished += 1
                    if self.progress is not None:
                        self.progress(finished, len(items))
                # a worker's death fails every task it held, the innocent too: a retry runs only when
                # nothing else is on the cluster, so a second death convicts the retried trace alone
                if waiting and not pending:
                    index, attempt = waiting.popleft()
                    retry = self.client.submit(fn, items[index], key=f"{prefix}-{index}-{attempt}", pure=False)
                    origin[retry.key] = (index, attempt)
                    pending[retry.key] = retry
                    completions.add(retry)
                while following in done:
                    yield done.pop(following)
                    following += 1
        finally:
            if pending:  # the caller stopped early: free the cluster
                self.client.cancel(list(pending.values()))

    def _outcome(self, future: Any, value: Any, attempt: int) -> Any:
        """The task's result, ``None`` when it should be retried, or a :class:`Lost`."""
        if future.status == "finished":
            return value
        if future.status != "error":  # cancelled or lost: the cluster dropped it
            return Lost("the Dask cluster cancelled its task (scheduler restarted or connection lost)")
        exc = future.exception()  # the error travelled with the completion: no round trip
        if isinstance(exc, require().KilledWorker):
            if attempt < self.retries:
                return None
            runs = attempt + 1
            return Lost(f"the Dask worker analysing it died ({runs} run{'s' if runs > 1 else ''}, "
                        f"retried {attempt}×); the trace may crash or exhaust the worker")  # fmt: skip
        return Lost(f"internal error on a Dask worker: {type(exc).__name__}: {exc}", internal=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Progress | None]:
    """A rich progress bar on stderr fed by the cluster's completions; none when stderr is not a terminal."""
    err = Console(stderr=True)
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
