"""The retraining fixtures (tests/service/jobs/fixtures.py) for the fold-in tests."""

from tests.service.jobs.fixtures import job_settings, live, tiny_model  # noqa: F401
