"""The retraining fixtures (tests/service/jobs/fixtures.py): test_snapshot.py seeds SQL from
the tiny trained model's dataset."""

from tests.service.jobs.fixtures import job_settings, live, tiny_model  # noqa: F401
