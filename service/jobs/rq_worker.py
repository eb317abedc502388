"""The RQ worker ``margo worker`` runs: RQ's own, with its command listener waking every
second instead of every minute.

RQ (3.0) listens for commands (stop the job, shut down) on a pub/sub thread that blocks up to
``sleep_time`` (60 s) per read, and stops it at shutdown with redis-py's
``PubSubWorkerThread.stop()``, which (since redis-py 8) waits for the thread to end. When the
thread has already read the reply to the shutdown's UNSUBSCRIBE before it was told to stop,
it starts another wait for a subscription that never comes, and the worker's exit (``--burst``
after the last job, or SIGTERM in the compose stack) hangs for the rest of the minute: a test
of the burst worker failed about one run in five on a loaded machine. A one-second wait bounds
that to a second; commands still arrive at once (a read returns as soon as one comes).
"""

from __future__ import annotations

from rq import Worker

LISTEN_WAKE_S = 1.0
"""Longest idle read of the command listener: the most a worker's exit can wait for it."""


class MargoWorker(Worker):
    def subscribe(self) -> None:
        """RQ's subscription to this worker's command channel, with a short idle read."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ's own handler of listener errors, where this RQ version has one (pyproject: rq>=1.16)
        handler = getattr(self, "_pubsub_exception_handler", None)
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=LISTEN_WAKE_S, daemon=True, exception_handler=handler
        )
