"""POST /retrain on the in-process worker (SQLite): the whole feedback loop, the gate, the
409 on a concurrent retrain, bad hyper-parameters, Redis down, a bundle failing verification."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.db.tables import utcnow
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.factories import corrupt
from tests.service.jobs.helpers import FAST, api_key, wait_for, wait_job

REC = "/users/{}/recommendations"


def top(client: TestClient, user: str, k: int = 10) -> tuple[str, list[str]]:
    body = client.get(REC.format(user), params={"k": k, "explain": False}).json()
    return body["model_version"], [it["item_id"] for it in body["items"]]


def retrain(client: TestClient, admin: dict, **hp: object) -> dict:
    r = client.post("/retrain", json={"hyperparameters": hp, "note": "test"}, headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["status_url"].endswith(f"/jobs/{body['job_id']}")
    return body


def test_ingest_retrain_activate_and_exclude(live: tuple[TestClient, dict, dict]) -> None:
    client, admin, write = live
    version, before = top(client, "0")
    # feedback: user 0 takes two of its top items, a brand-new user arrives
    new = [
        {"user_id": "0", "item_id": i, "timestamp": 1_800_000_000 + n}
        for n, i in enumerate(before[:2])
    ]
    new += [{"user_id": "fresh", "item_id": i, "timestamp": 1_800_000_100} for i in before[:3]]
    r = client.post("/interactions", json={"interactions": new}, headers=write)
    assert r.status_code == 201 and r.json()["written"] == len(new)
    assert not set(before[:2]) & set(top(client, "0")[1])  # excluded at once

    job = wait_job(client, retrain(client, admin, **FAST)["job_id"], admin)
    assert job["status"] == "succeeded", job
    gate = job["metrics"]["gate"]
    assert gate["passed"] and gate["active_version"] == version
    assert gate["new"] >= (1 - 0.02) * gate["active"]
    assert job["progress"] == 1.0 and job["epoch"] >= 1 and job["finished_at"]
    assert job["metrics"]["snapshot"]["pairs"] == 1500 + len(new)
    models = client.get("/models").json()
    assert models["active"] == job["result_version"] != version
    new_version, after = top(client, "0")
    assert new_version == job["result_version"]
    assert not set(before[:2]) & set(after)  # still excluded: now training data
    fresh_version, fresh = top(client, "fresh")
    body = client.get(REC.format("fresh"), params={"k": 5}).json()
    assert body["strategy"] == "personal"  # the new user is known to the new model
    assert not set(before[:3]) & set(fresh)


def test_gate_rejects_a_worse_model(live: tuple[TestClient, dict, dict]) -> None:
    client, admin, _ = live
    active = client.get("/models").json()["active"]
    # one epoch of a plain BPR model with a tiny learning rate cannot match a trained MARGO
    r = client.post(
        "/retrain",
        json={"model": "bpr", "hyperparameters": {"epochs": 1, "lr": 1e-6, "dim": 4}},
        headers=admin,
    )
    job = wait_job(client, r.json()["job_id"], admin)
    assert job["status"] == "rejected", job
    gate = job["metrics"]["gate"]
    assert not gate["passed"] and gate["new"] < gate["threshold"]
    assert f"{gate['new']:.4f}" in job["error"] and f"{gate['active']:.4f}" in job["error"]
    assert client.get("/models").json()["active"] == active
    rejected = client.get(f"/models/{job['result_version']}").json()
    assert rejected["status"] == "rejected" and "fails the gate" in rejected["note"]


def test_concurrent_retrain_is_409_and_cancel_stops_it(live: tuple[TestClient, dict, dict]) -> None:
    client, admin, _ = live
    first = retrain(client, admin, epochs=500, patience=500)
    r = client.post("/retrain", json={}, headers=admin)
    assert r.status_code == 409 and first["job_id"] in r.json()["detail"]
    # wait until it trains, then cancel: it stops at its next epoch
    for _ in range(600):
        job = client.get(f"/jobs/{first['job_id']}", headers=admin).json()
        if job["epoch"]:
            break
    r = client.delete(f"/jobs/{first['job_id']}", headers=admin)
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    job = wait_job(client, first["job_id"], admin)
    assert job["status"] == "cancelled" and job["epoch"] < 500
    assert client.delete(f"/jobs/{first['job_id']}", headers=admin).status_code == 409
    assert client.get("/models").json()["active"] == "tiny"
    # the queue is free again
    assert client.post("/retrain", json={"hyperparameters": FAST}, headers=admin).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
        ({"hyperparameters": {"lr": -1}}, "hyperparameters.lr"),
        ({"hyperparameters": {"learning_rate": 0.1}}, "hyperparameters.learning_rate"),
        ({"hyperparameters": {"modalities": ["audio"]}}, "hyperparameters.modalities"),
        ({"model": "gpt"}, "model"),
        ({"hyperparameters": {"epochs": 1001}}, "hyperparameters.epochs"),  # TrainConfig's bound
        ({"hyperparameters": {"stopgrad": False}}, "hyperparameters.stopgrad"),  # not settable
        # a combination TrainConfig refuses, named by its field (not by a CLI flag)
        ({"model": "bpr", "hyperparameters": {"two_stage": False}}, "hyperparameters.two_stage"),
    ],
)
def test_bad_hyperparameters_are_422_naming_the_field(
    live: tuple[TestClient, dict, dict], body: dict, field: str
) -> None:
    client, admin, _ = live
    r = client.post("/retrain", json=body, headers=admin)
    assert r.status_code == 422 and field in r.json()["detail"], r.text
    assert "--" not in r.json()["detail"], r.text
    assert client.get("/jobs", headers=admin).json()["jobs"] == []


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"hyperparameters": {"alpha": NaN}}', "hyperparameters.alpha"),
        ('{"hyperparameters": {"lr": Infinity}}', "hyperparameters.lr"),
        ('{"hyperparameters": {"reg_weight": Infinity}}', "hyperparameters.reg_weight"),
    ],
)
def test_nan_and_infinity_are_refused_not_replaced(
    live: tuple[TestClient, dict, dict], raw: str, field: str
) -> None:
    client, admin, _ = live
    headers = {**admin, "Content-Type": "application/json"}
    r = client.post("/retrain", content=raw, headers=headers)
    assert r.status_code == 422 and field in r.json()["detail"], r.text
    assert client.get("/jobs", headers=admin).json()["jobs"] == []


def test_hyperparameters_are_trainconfig_fields_with_its_bounds() -> None:
    from service.schemas import RetrainIn, TrainParams
    from trainer.cli.show_config import retrain_body
    from trainer.config import RETRAIN_FIELDS, TrainConfig

    assert list(TrainParams.model_fields) == list(RETRAIN_FIELDS)
    for name, info in TrainParams.model_fields.items():
        ours = TrainConfig.model_fields[name]
        assert (info.metadata, info.description) == (ours.metadata, ours.description), name
    # the Makefile demo's retrain body, printed from its config file, is a valid request
    demo = TrainConfig.from_file(Path(__file__).parents[3] / "configs" / "demo.json")
    body = RetrainIn.model_validate(retrain_body(demo))
    assert body.hyperparameters.model_dump(exclude_none=True) == {
        k: getattr(demo, k) for k in demo.model_fields_set if k != "model"
    }


def test_retrain_needs_an_admin_key(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    assert client.post("/retrain", json={}).status_code == 401
    assert client.post("/retrain", json={}, headers=write).status_code == 403


def test_redis_down_is_503_and_recommendations_keep_working(
    job_settings: Callable[..., Settings],
) -> None:
    settings = job_settings(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    admin = api_key(settings, "admin")
    for client in start_client(settings):
        r = client.post("/retrain", json={}, headers=admin)
        assert r.status_code == 503 and r.json()["error"] == "queue_unavailable"
        assert "unreachable" in r.json()["detail"]
        assert client.get("/jobs", headers=admin).json()["jobs"] == []
        recs = client.get(REC.format("0"), params={"k": 3})
        assert recs.status_code == 200 and len(recs.json()["items"]) == 3


def test_a_bundle_failing_verification_is_never_activated(
    live: tuple[TestClient, dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, admin, _ = live
    import trainer.export

    real_export = trainer.export.export_model

    def export_then_corrupt(*args: object, **kwargs: object) -> Path:
        path = real_export(*args, **kwargs)
        corrupt(path)
        return path

    monkeypatch.setattr(trainer.export, "export_model", export_then_corrupt)
    job = wait_job(client, retrain(client, admin, **FAST)["job_id"], admin)
    assert job["status"] == "failed" and "verification" in job["error"]
    failed = [m for m in client.get("/models").json()["models"] if m["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["version"].startswith("retrain-")
    assert client.get("/models").json()["active"] == "tiny"


def test_retrain_seeds_a_database_registered_before_seeding(
    live: tuple[TestClient, dict, dict],
) -> None:
    client, admin, write = live
    from sqlalchemy import delete

    from service.db.tables import Interaction, ItemFeature

    with client.app.state.margo.db.session() as session:  # as a pre-0003 database would be
        session.execute(delete(Interaction))
        session.execute(delete(ItemFeature))
    records = [{"user_id": "0", "item_id": "1", "timestamp": 1_800_000_000}]
    assert (
        client.post("/interactions", json={"interactions": records}, headers=write).json()[
            "written"
        ]
        == 1
    )
    job = wait_job(client, retrain(client, admin, **FAST)["job_id"], admin)
    assert job["status"] == "succeeded", job
    snapshot = job["metrics"]["snapshot"]
    assert snapshot["modalities"] == {"image": 16, "text": 384}
    assert snapshot["items_missing_vectors"] == {}
    assert snapshot["pairs"] in (1500, 1501)  # 1500 if user 0 had item 1 already


def test_a_job_ended_by_the_stale_sweep_never_activates(
    live: tuple[TestClient, dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that was only stalled (not dead) comes back after the sweep failed its job:
    its model must not replace the active one, and the job stays failed."""
    import service.jobs.pipeline as retrain_mod
    from service.db import crud

    client, admin, _ = live
    active = client.get("/models").json()["active"]
    real = retrain_mod.evaluate_bundle

    def sweep_then_evaluate(*args: object, **kwargs: object) -> dict:
        # what sweep_stale does when the heartbeat is late, right before the gate decides
        with client.app.state.margo.registry.db.session() as session:
            crud.sweep_stale_jobs(  # its last attempt: failed, not queued again
                session, older_than=utcnow() + dt.timedelta(days=1), max_attempts=1
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(retrain_mod, "evaluate_bundle", sweep_then_evaluate)
    job = wait_job(client, retrain(client, admin, **FAST)["job_id"], admin)
    assert job["status"] == "failed" and "stopped responding" in job["error"], job
    jobs = client.app.state.margo.jobs
    wait_for(lambda: jobs.current is None, what="the job thread to finish the job")
    assert client.get("/models").json()["active"] == active
    if job["result_version"]:
        assert client.get(f"/models/{job['result_version']}").json()["status"] == "ready"
