"""The retraining fixtures (tests/service/jobs/fixtures.py) for this folder's tests."""

from tests.service.jobs.fixtures import job_settings, live, tiny_model  # noqa: F401
