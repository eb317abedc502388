"""How many CPU threads a training run uses, chosen so a shared machine does not stall it.

Measured by ``python -m bench.train_speed --measure threads`` (issue 17.4): with torch's default
(one intra-op thread per core) and the cores taken by other processes, every OpenMP parallel
region waits for a worker that is not running, and a BPR epoch took many times longer than with
one thread. Two defences:

- ``OMP_WAIT_POLICY=PASSIVE`` (set in ``trainer/__init__.py`` before torch is imported, unless
  the user set it): idle workers sleep instead of spinning, so they neither steal cores from
  the thread doing the work nor from the other processes;
- ``threads=None`` ("auto") picks the cores that are free when the run starts: all usable
  cores on an idle machine, fewer (down to one) as the 1-minute load average rises. It only
  ever lowers the process's current count, so a count set on purpose (the tests' one thread,
  an earlier run's choice) stands and runs in one process keep one thread count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def auto_threads(cores: int, load: float) -> int:
    """Threads for a run that starts on ``cores`` usable CPUs under a 1-minute ``load``.

    The run itself is one runnable process, so ``load - 1`` (at least 0) of the cores are
    counted as taken by others; the rest, rounded down, at least 1 and at most ``cores``.
    """
    others = max(load - 1.0, 0.0)
    return max(1, min(cores, math.floor(cores - others + 1e-9)))


def choose_threads(threads: int | None, current: int) -> int:
    """``threads`` if set, else :func:`auto_threads` for this machine now, at most ``current``
    (the process's thread count, ``torch.get_num_threads()``)."""
    if threads:
        return threads
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return min(current, auto_threads(usable_cores(), load))


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """numpy/scipy's BLAS at ``n`` threads inside the block (the reliability score's SVDs).

    OpenBLAS starts one thread per core and idles them by spinning, so with the cores taken
    its eigh stalls the way torch's OpenMP did; the run's torch thread count is the bound.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, n), user_api="blas"):
        yield
