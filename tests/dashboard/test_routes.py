"""The dashboard's routes without a browser: the page, its assets, and /docs left alone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.dashboard import STATIC_DIR
from service.db.migrate import upgrade
from service.settings import Settings
from tests.service.conftest import start_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """An app with keys required for reads and no model: the page must load anyway."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'margo.db'}",
        model_dir=tmp_path / "models",
        redis_url=None,
        public_reads=False,
    )
    upgrade(settings.database_url)
    yield from start_client(settings)


def test_the_page_is_served_at_the_root_without_a_key(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/static/js/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/"


def test_every_asset_the_page_loads_is_served_locally(client: TestClient) -> None:
    page = client.get("/").text
    refs = re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page)
    assert len(refs) >= 3
    modules = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js"))
    for ref in refs + [f"/dashboard/static/{m}" for m in modules]:
        r = client.get(ref)
        assert r.status_code == 200, ref
        if ref.endswith(".js"):  # browsers refuse modules served with another type
            assert "javascript" in r.headers["content-type"], ref
    # nothing in the scripts or the page reaches outside the server
    for path in [STATIC_DIR / "index.html", *STATIC_DIR.rglob("*.js"), *STATIC_DIR.rglob("*.css")]:
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", path.read_text()), path


def test_docs_stay_the_api_reference(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/dashboard" not in paths
    assert "/reliability/histogram" in paths


def test_unknown_static_files_are_404_json(client: TestClient) -> None:
    r = client.get("/dashboard/static/nope.js")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_docs_and_redoc_use_only_assets_this_app_serves(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "<script>" not in r.text  # no inline script: the CSP would refuse it
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and all(ref.startswith("/") for ref in refs), refs
        for ref in refs:
            assert client.get(ref).status_code == 200, ref
        assert 'data-openapi-url="/openapi.json"' in r.text
