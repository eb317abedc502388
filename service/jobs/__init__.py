"""Feedback and retraining: jobs that rebuild a dataset from SQL, train, and gate activation.

    lifecycle.py  a job's state transitions (claim, heartbeat, finish, fail, cancel, stale
                  sweep), used by the routes, the queue and the job itself; torch-free
    queue.py      where jobs run: RQ on Redis (``margo worker``) or one in-process thread
    pipeline.py   the retrain job as named steps (prepare, snapshot, train, export,
                  register, gate, activate); loaded by dotted path when a job runs
    gate.py       validation Recall@20 of a model bundle on a snapshot; the activation rule

The SQL <-> dataset bundle conversions it uses live next to the database code
(service/db/snapshot.py, service/db/seed.py). Only pipeline.py imports torch-using trainer
code, inside its steps; nothing the API imports at start or on a request imports it.
"""
