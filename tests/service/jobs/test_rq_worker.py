"""``margo worker``'s RQ worker leaves at once when told to (service/jobs/rq_worker.py): its
command listener must not hold the exit for RQ's minute-long idle read."""

from __future__ import annotations

import time

from service.jobs.rq_worker import LISTEN_WAKE_S, MargoWorker
from tests.service.jobs.helpers import wait_for


def listener_stop_seconds(worker_class: type, url: str, prefix: str) -> float:
    import redis
    from rq import Queue

    conn = redis.Redis.from_url(url)
    try:
        worker = worker_class([Queue(f"{prefix}q", connection=conn)], connection=conn,
                              name=f"{prefix}w")  # fmt: skip
        worker.subscribe()
        wait_for(lambda: worker.pubsub.subscribed, timeout=5, what="the subscription")
        # the race of a CI failure: the listener reads an UNSUBSCRIBE reply before it is told
        # to stop, and then waits for a subscription that never comes
        worker.pubsub.unsubscribe()
        wait_for(lambda: not worker.pubsub.subscribed, timeout=5, what="the listener's read")
        t0 = time.monotonic()
        worker.unsubscribe()  # what RQ's teardown runs at exit
        return time.monotonic() - t0
    finally:
        conn.close()


def test_the_worker_exits_within_a_wake_of_its_listener(redis_url: tuple[str, str]) -> None:
    took = listener_stop_seconds(MargoWorker, *redis_url)
    # RQ's own Worker, in the same steps, waited out its 60 s read (rq 3.0, redis-py 8.2)
    assert took < LISTEN_WAKE_S + 4.0, took
