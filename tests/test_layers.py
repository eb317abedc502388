"""The layer rules at run time: the API process serves and accepts a retrain without torch.

``lint-imports`` (pyproject.toml ``[tool.importlinter]``, run by ``make test``) checks the
import graph statically; these tests start the app in a fresh interpreter (so ``sys.modules``
starts clean), send it requests, post a retrain and look for torch among the loaded modules.

The in-process job thread would train (and load torch, as it should: jobs run worker-side),
so its job function is replaced by a recorder: the request path and the hand-over to the
queue are real, the training is not run. With ``MARGO_TEST_REDIS_URL`` set, the job goes to
a real RQ queue instead and nothing is replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_LIKE = ("torch", "sentence_transformers", "transformers")

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path

    from fastapi.testclient import TestClient

    import service.jobs.queue as queue_mod
    from service.app import create_app
    from service.auth import HEADER, create_api_key
    from service.db.migrate import upgrade
    from service.db.session import Database
    from service.settings import Settings
    from tests.service.factories import item_id, make_bundle, user_id

    root, redis_url = Path(sys.argv[1]), sys.argv[2] or None
    handed_over = threading.Event()
    if redis_url is None:
        def recorder(job_id, settings, registry=None):  # the job thread's hand-over, no training
            handed_over.set()
            return "recorded"
        queue_mod.job_function = lambda dotted=queue_mod.JOB_FUNCTION: recorder

    settings = Settings(
        database_url=f"sqlite:///{root / 'margo.db'}", model_dir=root / "models",
        redis_url=redis_url, poll_interval_s=0.1, public_reads=True,
        queue_name=f"margo-test-layers-{root.name}",
    )
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    db = Database(settings.database_url)
    with db.session() as session:
        admin = create_api_key(session, "admin", "test-layers")
    db.dispose()

    report = {}
    app = create_app(settings)
    with TestClient(app, headers={HEADER: admin}) as client:
        assert app.state.margo.registry.wait_ready(30), "start-up load did not finish"
        report["after_start"] = sorted(sys.modules)
        for url in (
            f"/users/{user_id(0)}/recommendations?k=5&explain=true",
            "/users/nobody/recommendations?k=5",
            f"/items/{item_id(3)}",
            f"/items/{item_id(3)}/similar?k=5",
            "/models",
            "/jobs",
        ):
            r = client.get(url)
            assert r.status_code == 200, (url, r.status_code, r.text)
        r = client.post("/retrain", json={"hyperparameters": {"epochs": 1}, "note": "layers"})
        assert r.status_code == 202, r.text
        report["job"] = r.json()["job_id"]
        report["after_retrain"] = sorted(sys.modules)
        if redis_url is None:
            assert handed_over.wait(30), "the job thread never took the job"
            report["after_hand_over"] = sorted(sys.modules)
        else:
            from rq import Queue
            from service.state import redis_client
            rq_queue = Queue(settings.queue_name, connection=redis_client(redis_url))
            report["queued"] = rq_queue.job_ids
            rq_queue.empty()  # no worker listens to this test's queue: leave nothing behind
    print("REPORT " + json.dumps(report))
    """
)


def _run_app(tmp_path: Path, redis_url: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), redis_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def _torch_like(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in TORCH_LIKE]


def test_serving_and_posting_a_retrain_leave_torch_unloaded(tmp_path: Path) -> None:
    report = _run_app(tmp_path)
    for stage in ("after_start", "after_retrain", "after_hand_over"):
        assert _torch_like(report[stage]) == [], f"torch loaded {stage.replace('_', ' ')}"
    # the checks ran where they should: the app and the retrain route were imported
    assert "service.api.retrain" in report["after_retrain"]
    assert "service.jobs.pipeline" not in report["after_hand_over"]


def test_a_retrain_queued_on_redis_leaves_torch_unloaded(tmp_path: Path) -> None:
    redis_url = os.environ.get("MARGO_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("MARGO_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)")
    report = _run_app(tmp_path, redis_url)
    assert _torch_like(report["after_retrain"]) == []
    assert report["queued"] == [report["job"]], report  # queued, not run in the API process
