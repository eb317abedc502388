"""The dashboard: one HTML page at ``/`` and its static files, nothing else.

The page is a shell; plain JavaScript modules (``static/js/``) render each view from the public
JSON API, sending the browser session's API key in ``X-API-Key``. So the dashboard can do
exactly what a client with that key can do, and the API stays the one source of truth. No
build step, nothing fetched from outside the server at run time (see the page's CSP).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/dashboard/static"

# The page only talks to its own origin: scripts, styles and API calls alike.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/dashboard")
def dashboard_alias() -> RedirectResponse:
    return RedirectResponse("/", status_code=308)


def install_dashboard(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/dashboard/static``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="dashboard-static")


__all__ = ["STATIC_DIR", "STATIC_URL", "install_dashboard", "router"]
