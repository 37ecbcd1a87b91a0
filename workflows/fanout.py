"""Many fits at once: run a function over items on Dask distributed, results in input order.

Multi-fit workflows (K enumeration of latent classes, refits under prior sets, SBC
replicates) pass their work through :func:`fan_out`.  By default it starts a local
cluster of worker *processes* (numba, which nutpie compiles to, and PyTensor hold the GIL
while compiling, so threads would not overlap); ``scheduler="tcp://host:8786"`` sends the
work to a cluster someone already runs instead.  One worker means no cluster at all: the
items run here, one after the other, with no start-up cost.

Each worker process compiles a model the first time it fits it (numba caches live per
process), so a model family is best fanned out over few long-lived workers rather than
many short ones.  Workers get one numba/BLAS/OpenMP thread each: the parallelism is
across fits, and nutpie's chain threads already fill a core each.

Overhead: starting a local cluster costs seconds; with no idle core the fan-out buys nothing
and costs little, and it pays where cores are free (a workstation, or a cluster via
``--scheduler``).  ``python -m workflows.fanout`` measures it; the recorded run is in
benchmarks/RESULTS.md ("Fan-out overhead").
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Iterable

from workflows.errors import UserError

#: Environment of each worker process: one thread per numeric library, so N workers on N
#: cores do not each start N threads.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": "65536"}


class FanOutError(RuntimeError):
    """One item of a fan-out failed; ``item`` and ``index`` say which."""

    def __init__(self, message: str, index: int, item: Any):
        super().__init__(message)
        self.index = index
        self.item = item


def describe_item(item: Any, limit: int = 80) -> str:
    """A short label for an item in messages and progress bars (never its data)."""
    name = getattr(item, "name", None)
    text = str(name) if isinstance(name, str) else repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def default_workers(n_items: int) -> int:
    """min(items, cores): one process per core at most."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_items, cores))


def fan_out(fn: Callable[[Any], Any], items: Iterable[Any], *, scheduler: str | None = None,
            n_workers: int | None = None, progress: bool = True, label: str = "") -> list:
    """``[fn(item) for item in items]``, on Dask distributed when that can help.

    ``scheduler``: address of a running Dask scheduler (``tcp://...``); None starts a
    local cluster of ``n_workers`` processes (default min(items, cores)).  With one
    worker and no scheduler the items run serially in this process.  Results come back in
    input order; the first failure cancels the rest and is re-raised naming its item.
    ``fn`` and the items must pickle (module-level functions, ``functools.partial``).
    """
    items = list(items)
    if not items:
        return []
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    workers = n_workers or default_workers(len(items))
    if scheduler is None and workers == 1:
        return _serial(fn, items, progress, label)
    return _distributed(fn, items, scheduler, workers, progress, label)


def _bar(total: int, progress: bool, label: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label or "fits", unit="fit", disable=not progress, leave=True)


def _failure(label: str, index: int, item: Any, err: BaseException) -> Exception:
    where = f"{label + ': ' if label else ''}item {index} ({describe_item(item)}) failed"
    if isinstance(err, UserError):
        return UserError(f"{where}: {err}", err.exit_code)
    return FanOutError(f"{where}: {type(err).__name__}: {err}", index, item)


def _serial(fn, items, progress, label) -> list:
    results = []
    with _bar(len(items), progress, label) as bar:
        for i, item in enumerate(items):
            try:
                results.append(fn(item))
            except Exception as err:
                raise _failure(label, i, item, err) from err
            bar.update(1)
    return results


def _distributed(fn, items, scheduler, workers, progress, label) -> list:
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    started = time.perf_counter()
    if scheduler is None:
        env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                              "distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise UserError(f"--scheduler {scheduler}: no Dask scheduler answered there ({err})") from None
    try:
        startup = time.perf_counter() - started
        futures = client.map(fn, items, pure=False, key=[f"{label or 'item'}-{i}-{os.urandom(4).hex()}"
                                                          for i in range(len(items))])
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(items)
        with _bar(len(items), progress, label) as bar:
            bar.set_postfix_str(f"cluster up in {startup:.1f} s", refresh=False)
            for future in as_completed(futures):
                i = index[future.key]
                if future.status == "error":
                    err = future.exception()
                    client.cancel(futures)
                    raise _failure(label, i, items[i], err) from err
                results[i] = future.result()
                bar.update(1)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _small_fit(prior: str) -> float:
    """One small gradient fit (build, numba compile, sample): the unit of the overhead check."""
    # Local: only the overhead check run as a script needs PyMC; the fan-out itself stays light.
    from models import sbc
    from models.sampling import SamplerSettings, fit

    started = time.perf_counter()
    fit(sbc.build_model(sbc.get_design("tiny"), prior), SamplerSettings(draws=300, tune=300, chains=2, seed=1))
    return time.perf_counter() - started


if __name__ == "__main__":
    # Overhead of the fan-out against serial fits: python -m workflows.fanout
    for workers in (1, 2):
        t0 = time.perf_counter()
        each = fan_out(_small_fit, ["default", "pc"], n_workers=workers, progress=False)
        print(f"{workers} worker(s): {time.perf_counter() - t0:.1f} s wall for 2 fits "
              f"(each {', '.join(f'{s:.1f}' for s in each)} s inside)")
