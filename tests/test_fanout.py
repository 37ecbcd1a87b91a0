"""Fan-out on Dask: results in input order, failures named by item, a serial path with no
cluster for one worker, worker processes with one numeric thread each, and an existing
scheduler used when given."""

from __future__ import annotations

import os
import time

import pytest

from workflows.errors import UserError
from workflows.fanout import FanOutError, default_workers, fan_out


def _slow_square(x):
    time.sleep(0.4 if x == 1 else 0.0)  # the first item finishes last
    return x * x, os.getpid(), os.environ.get("NUMBA_NUM_THREADS")


def _fails_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def _worker_address(x):
    from distributed import get_worker

    return get_worker().address


def _user_error(x):
    raise UserError(f"bad setting {x}")


def test_one_worker_runs_here_in_order_with_no_cluster():
    results = fan_out(_slow_square, [1, 2, 3], n_workers=1, progress=False)
    assert [r[0] for r in results] == [1, 4, 9]
    assert {r[1] for r in results} == {os.getpid()}  # no worker process was started
    assert fan_out(_slow_square, [], progress=False) == []
    assert default_workers(1) == 1 and default_workers(10_000) == (len(os.sched_getaffinity(0)))


def test_failures_name_the_item_serially():
    with pytest.raises(FanOutError, match=r"K=2: item 2 \(3\) failed: ValueError: three is not allowed") as info:
        fan_out(_fails_on_three, [1, 2, 3, 4], n_workers=1, progress=False, label="K=2")
    assert info.value.index == 2 and info.value.item == 3
    with pytest.raises(UserError, match=r"item 0 \('x'\) failed: bad setting x"):
        fan_out(_user_error, ["x"], n_workers=1, progress=False)
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        fan_out(_slow_square, [1], n_workers=0)


def test_local_cluster_keeps_input_order_and_names_failures():
    results = fan_out(_slow_square, [1, 2, 3], n_workers=2, progress=False, label="squares")
    assert [r[0] for r in results] == [1, 4, 9]
    assert os.getpid() not in {r[1] for r in results}      # ran in worker processes
    assert {r[2] for r in results} == {"1"}                 # one numba thread per worker
    with pytest.raises(FanOutError, match=r"squares: item 1 \(3\) failed: ValueError"):
        fan_out(_fails_on_three, [1, 3], n_workers=2, progress=False, label="squares")


def test_an_existing_scheduler_is_used():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        results = fan_out(_slow_square, [3, 1], scheduler=cluster.scheduler_address, progress=False)
        assert [r[0] for r in results] == [9, 1]
        # The work ran on that cluster's worker, and the cluster outlives the fan-out.
        workers = fan_out(_worker_address, [0, 1], scheduler=cluster.scheduler_address, progress=False)
        assert set(workers) == {w.address for w in cluster.workers.values()}
        assert cluster.status.name == "running"
