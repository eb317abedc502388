from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import IndexKind, Settings, get_settings


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARGO_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("MARGO_REDIS_URL", "")
    monkeypatch.setenv("MARGO_ANN_KIND", "hnsw")
    monkeypatch.setenv("MARGO_CACHE_PREFIX", "p:")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.database_url == "postgresql+psycopg://u@h/db"
        assert settings.redis_url is None and settings.ann_kind is IndexKind.HNSW
        assert settings.cache_prefix == "p:" and get_settings() is settings
    finally:
        get_settings.cache_clear()


def test_unsafe_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(poll_interval_s=0)
    with pytest.raises(ValidationError):
        Settings(faiss_threads=0)
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)
