"""The API reference pages (``/docs``, ``/redoc``) served without the internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on an offline
machine. The assets come from the ``fastapi-offline`` package instead (a maintained wheel that
ships them) and are served by this app; the pages hold no inline script, so they live under the
same same-origin Content-Security-Policy as the dashboard (plus the inline styles both
renderers inject, and ReDoc's blob: worker).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from service.dashboard import STATIC_URL

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="icon" href="{assets}/favicon.png">
  {css}
</head>
<body>
  <div id="{mount}" data-openapi-url="{openapi}"></div>
  <script src="{assets}/{bundle}"></script>
  <script src="{static}/js/docs/{init}"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


def _page(title: str, mount: str, bundle: str, init: str, css: str = "") -> HTMLResponse:
    html = _PAGE.format(
        title=title,
        assets=ASSETS_URL,
        static=STATIC_URL,
        css=css,
        mount=mount,
        openapi="/openapi.json",
        bundle=bundle,
        init=init,
    )
    return HTMLResponse(
        html,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    css = f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">'
    return _page("MARGO API - Swagger UI", "swagger-ui", "swagger-ui-bundle.js", "swagger.js", css)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return _page("MARGO API - ReDoc", "redoc", "redoc.standalone.js", "redoc.js")


def install_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` with their assets under ``/docs-assets``.

    The app must be created with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages).
    """
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


__all__ = ["ASSETS_URL", "install_api_docs"]
