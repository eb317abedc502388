"""Feedback and retraining: jobs that rebuild a dataset from SQL, train, and gate activation.

    queue.py     where jobs run: RQ on Redis (``margo worker``) or one in-process thread
    runner.py    one job's life: claim, heartbeat, progress, cancellation, terminal status
    retrain.py   the retraining pipeline (snapshot -> train -> export -> register -> gate)
    snapshot.py  a consistent SQL snapshot written as a dataset bundle
    gate.py      validation Recall@20 of a model bundle on a snapshot; the activation rule
    seed.py      copy a bundle's dataset (interactions, features) into SQL at registration
    params.py    the hyper-parameters a retrain request may set

Everything that needs torch is imported inside the job, never by the API's request path.
"""
