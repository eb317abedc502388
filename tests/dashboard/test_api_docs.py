"""/docs and /redoc work offline: a real browser renders both from assets the app serves."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.browser import console_errors, wait
from tests.dashboard.conftest import Server


def test_swagger_ui_lists_the_operations_offline(
    driver: WebDriver, public_server: Server, shot
) -> None:
    driver.get(f"{public_server.url}/docs")
    wait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10)
    paths = {
        el.text for el in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert "/users/{user_id}/recommendations" in {p.replace("\u200b", "") for p in paths}
    # every request the page made stayed on this server (the CSP would block others; a
    # blocked request shows up as a console error)
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert urls and all(u.startswith(public_server.url) for u in urls), urls
    assert console_errors(driver) == []
    shot("swagger")


def test_redoc_renders_the_reference_offline(driver: WebDriver, public_server: Server) -> None:
    driver.get(f"{public_server.url}/redoc")
    wait(driver, 30).until(
        lambda d: "recommendations" in d.find_element(By.TAG_NAME, "body").text.lower()
    )
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    # ReDoc's bundle names its own "by Redocly" logo on its CDN; the page's CSP (img-src
    # 'self') refuses it, so the browser never fetches it. Everything else is this server's.
    elsewhere = [u for u in urls if not u.startswith(public_server.url)]
    assert all(u.startswith("https://cdn.redoc.ly/") for u in elsewhere), elsewhere
    # the refusal is the only console error (reading the log also clears it for later tests)
    errors = console_errors(driver)
    assert all("cdn.redoc.ly" in e and "Content Security Policy" in e for e in errors), errors
    assert "img-src 'self' data:" in httpx.get(f"{public_server.url}/redoc").headers[
        "content-security-policy"
    ]
