"""Browser helpers shared by the dashboard tests: waits, navigation, the key dialog, and the
check that contribution bars show the API's numbers."""

from __future__ import annotations

import math

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboard.conftest import Server


def wait(driver: WebDriver, timeout: float = 10):  # noqa: ANN201
    return WebDriverWait(driver, timeout, poll_frequency=0.05)


def visible(driver: WebDriver, css: str, timeout: float = 10) -> WebElement:
    return wait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def go(driver: WebDriver, server: Server, hash_: str) -> None:
    """Navigate inside the page (a hash change keeps the tab's sessionStorage, as a click).

    A tab that is not on the server yet (a test run on its own) gets the read key first, as
    the first test enters it."""
    if not driver.current_url.startswith(server.url):
        driver.get(f"{server.url}/#/nowhere")
        if driver.execute_script("return sessionStorage.getItem('margo.apiKey')") is None:
            driver.execute_script(
                "sessionStorage.setItem('margo.apiKey', arguments[0])", server.keys["read"]
            )
        driver.get(f"{server.url}/?with-key{hash_}")  # another URL: a real load, not a hash change
    else:
        driver.execute_script("location.hash = arguments[0]", hash_)


def key_dialog_open(driver: WebDriver) -> bool:
    return driver.execute_script("return document.getElementById('key-dialog').open")


def enter_key(driver: WebDriver, key: str) -> None:
    wait(driver).until(lambda d: key_dialog_open(d))
    field = driver.find_element(By.ID, "key-input")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "key-submit").click()


def dialog_error(driver: WebDriver) -> str:
    el = visible(driver, "#key-dialog-error")
    return el.text


def item_ids(driver: WebDriver, css: str) -> list[str | None]:
    return [el.get_attribute("data-item-id") for el in driver.find_elements(By.CSS_SELECTOR, css)]


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def no_error_panel(driver: WebDriver) -> None:
    panels = [p.text for p in driver.find_elements(By.CSS_SELECTOR, ".error-panel")]
    assert not panels, f"the page shows errors: {panels}"


def console_errors(driver: WebDriver) -> list[str]:
    """Script errors in the browser console (refused requests are expected, and skipped)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


def check_contribution_bars(driver: WebDriver, api: dict) -> None:
    """Each listed item's bar has one part per modality carrying the API's contribution, as
    long as |contribution| on the scale all bars share, stacked from the zero line outwards
    (positive parts to the right, negative ones to the left)."""
    items = driver.find_elements(By.CSS_SELECTOR, "#rec-list > li")
    assert item_ids(driver, "#rec-list > li") == [i["item_id"] for i in api["items"]]
    # the shared scale: how far stacks reach left (negative) and right of zero
    left = max(sum(-t["contribution"] for t in i["modalities"].values()
                   if t["contribution"] < 0) for i in api["items"])  # fmt: skip
    right = max(sum(t["contribution"] for t in i["modalities"].values()
                    if t["contribution"] >= 0) for i in api["items"])  # fmt: skip
    for li, expected in zip(items, api["items"], strict=True):
        terms = expected["modalities"]
        assert sum(t["contribution"] for t in terms.values()) == pytest.approx(expected["score"])
        track = li.find_element(By.CSS_SELECTOR, ".contrib-track").rect
        zero_px = track["x"] + left / (left + right) * track["width"]
        parts = li.find_elements(By.CSS_SELECTOR, ".contrib-track .contrib-seg")
        assert sorted(s.get_attribute("data-modality") for s in parts) == sorted(terms)
        right_edge, left_edge = zero_px, zero_px
        for seg in sorted(parts, key=lambda e: abs(e.rect["x"] - zero_px)):
            term = terms[seg.get_attribute("data-modality")]
            assert float(seg.get_attribute("data-contribution")) == pytest.approx(
                term["contribution"], rel=1e-9, abs=1e-12
            )
            box = seg.rect
            width = abs(term["contribution"]) / (left + right) * track["width"]
            assert math.isclose(box["width"], width, abs_tol=1.0)
            if term["contribution"] >= 0:
                assert math.isclose(box["x"], right_edge, abs_tol=1.0)
                right_edge += width
            else:
                assert math.isclose(box["x"] + box["width"], left_edge, abs_tol=1.0)
                left_edge -= width
        if expected["top_modality"]:
            assert expected["top_modality"] in li.find_element(By.CSS_SELECTOR, ".pill-top").text
        weights = {
            w.get_attribute("data-modality"): float(w.get_attribute("data-weight"))
            for w in li.find_elements(By.CSS_SELECTOR, ".weight-row")
        }
        assert weights == pytest.approx({m: t["weight"] for m, t in terms.items()})
