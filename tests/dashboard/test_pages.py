"""The dashboard in a real headless chromium against a real server (fixtures: conftest.py).

The tests share one browser tab and run in order, like one visit: the first one enters the
read key, the later ones check it is never asked for again.
"""

from __future__ import annotations

import json

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.dashboard.browser import (
    check_contribution_bars,
    console_errors,
    dialog_error,
    enter_key,
    go,
    item_ids,
    key_dialog_open,
    no_error_panel,
    text_of,
    visible,
    wait,
)
from tests.dashboard.conftest import Server

TERMINAL = {"succeeded", "failed", "cancelled", "rejected"}
K = 10


# -- 1. access ----------------------------------------------------------------------------------
def test_the_page_asks_for_a_key_once_and_keeps_it_for_the_tab(
    driver: WebDriver, server: Server, shot
) -> None:
    driver.get(f"{server.url}/")
    assert "MARGO" in driver.title
    wait(driver).until(lambda d: key_dialog_open(d))
    shot("asks-for-key")

    # a wrong key: the API's reason is shown and the dialog asks again
    enter_key(driver, "mgk_00000000_not-a-real-key")
    assert "unknown or revoked" in dialog_error(driver)
    shot("wrong-key")

    enter_key(driver, server.keys["read"])
    wait(driver).until(lambda d: not key_dialog_open(d))
    live = visible(driver, "#live-model")
    wait(driver).until(lambda d: "live: new" in live.text)
    stored = driver.execute_script("return sessionStorage.getItem('margo.apiKey')")
    assert stored == server.keys["read"]
    assert driver.execute_script("return localStorage.length") == 0  # the tab only

    # every section loads with the kept key: no second prompt
    for hash_, ready in [
        ("#/audit", "svg.histogram"),
        ("#/models", "#models-table"),
        ("#/jobs", "#retrain-form"),
        ("#/", "#user-form"),
    ]:
        go(driver, server, hash_)
        visible(driver, ready)
        assert not key_dialog_open(driver), f"{hash_} asked for the key again"
    # a reload keeps it too (same tab, same session)
    driver.refresh()
    wait(driver).until(lambda d: "live: new" in text_of(d, "live-model"))
    assert not key_dialog_open(driver)
    assert console_errors(driver) == []


# -- 2. recommendations ------------------------------------------------------------------------
def test_recommendations_show_contribution_bars_matching_the_api(
    driver: WebDriver, server: Server, shot
) -> None:
    go(driver, server, "#/")
    user = visible(driver, "#user-input")
    user.clear()
    user.send_keys("7")
    # stored users whose id starts with what was typed are suggested (GET /users?prefix=)
    found = {u["user_id"] for u in server.api("/users", prefix="7", limit=20)["users"]}
    assert "7" in found
    wait(driver).until(lambda d: found <= {
        o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#recent-users option")
    })  # fmt: skip
    Select(driver.find_element(By.ID, "k-select")).select_by_value(str(K))
    driver.find_element(By.ID, "user-submit").click()
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rec-list > li")) == K)

    api = server.api("/users/7/recommendations", k=K, exclude_seen="true", explain="true")
    assert api["strategy"] == "personal"
    check_contribution_bars(driver, api)

    # titles arrive from GET /items/{id}
    first = api["items"][0]["item_id"]
    title = server.api(f"/items/{first}")["title"]
    wait(driver).until(lambda d: d.find_element(
        By.CSS_SELECTOR, "#rec-list > li:first-child .item-link").text == title)  # fmt: skip
    no_error_panel(driver)
    shot("recommendations")

    # the exclude-seen switch applies at once and shows in the address
    driver.find_element(By.CSS_SELECTOR, "label.switch").click()
    wait(driver).until(lambda d: "exclude_seen=false" in d.current_url)
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rec-list > li")) == K)
    with_seen = server.api("/users/7/recommendations", k=K, exclude_seen="false")
    expected = [i["item_id"] for i in with_seen["items"]]
    wait(driver).until(lambda d: item_ids(d, "#rec-list > li") == expected)


def test_an_unknown_user_gets_popular_items_with_a_note(driver: WebDriver, server: Server) -> None:
    go(driver, server, "#/users/nobody-knows-me?k=5")
    visible(driver, "#strategy")
    assert driver.find_element(By.ID, "strategy").text == "popular"
    notice = driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert "does not know user nobody-knows-me" in notice
    assert len(driver.find_elements(By.CSS_SELECTOR, "#rec-list > li")) == 5


# -- 3. item -------------------------------------------------------------------------------------
def test_an_item_shows_metadata_weights_against_the_catalogue_and_similar_items(
    driver: WebDriver, server: Server, shot
) -> None:
    go(driver, server, "#/users/7?k=5")
    link = visible(driver, "#rec-list > li:first-child .item-link")
    item_id = driver.find_element(By.CSS_SELECTOR, "#rec-list > li:first-child").get_attribute(
        "data-item-id"
    )
    link.click()
    api = server.api(f"/items/{item_id}")
    wait(driver).until(lambda d: d.find_element(By.ID, "item-title").text == api["title"])
    rows = driver.find_elements(By.CSS_SELECTOR, ".item-modality")
    shown = {r.get_attribute("data-modality"): float(r.get_attribute("data-weight")) for r in rows}
    assert shown == pytest.approx(api["model"]["weights"])
    # each modality's catalogue histogram with this item's weight marked
    markers = driver.find_elements(By.CSS_SELECTOR, ".item-modality svg.histogram .marker")
    assert len(markers) == len(shown)
    similar = server.api(f"/items/{item_id}/similar", k=10)
    expected = [s["item_id"] for s in similar["items"]]
    wait(driver).until(lambda d: item_ids(d, "#similar-list > li") == expected)
    no_error_panel(driver)
    shot("item")


# -- 4. audit ------------------------------------------------------------------------------------
def test_the_audit_shows_the_weight_histograms_and_extreme_items(
    driver: WebDriver, server: Server, shot
) -> None:
    go(driver, server, "#/audit?bins=20&rows=5")
    hist = server.api("/reliability/histogram", bins=20)
    wait(driver).until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#histograms svg.histogram"))
            == len(hist["modalities"])
        )
    )
    for m in hist["modalities"]:
        chart = driver.find_element(
            By.CSS_SELECTOR, f'#histograms svg.histogram[data-modality="{m["modality"]}"]'
        )
        bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
        assert [int(b.get_attribute("data-count")) for b in bars] == m["counts"]
        assert sum(m["counts"]) == hist["n_items"] == 80
        # taller bars for larger counts
        heights = [float(b.get_attribute("height")) for b in bars]
        top = max(range(len(heights)), key=heights.__getitem__)
        assert m["counts"][top] == max(m["counts"])
        for order in ("asc", "desc"):
            expected = server.api("/reliability", modality=m["modality"], order=order, limit=5)
            css = f'table.audit-table[data-modality="{m["modality"]}"][data-order="{order}"]'
            visible(driver, css)
            assert item_ids(driver, f"{css} tbody tr") == [i["item_id"] for i in expected["items"]]
    no_error_panel(driver)
    shot("audit")


# -- 5. models -----------------------------------------------------------------------------------
def test_activating_a_model_asks_for_an_admin_key_and_shows_the_result(
    driver: WebDriver, server: Server, shot
) -> None:
    go(driver, server, "#/models")
    visible(driver, '#models-table tr[data-version="new"][data-status="active"]')
    visible(driver, '#models-table tr[data-version="old"] [data-activate="old"]').click()
    # the tab's read key is refused with the API's reason; a wrong key too
    assert "needs role admin; the key has read" in dialog_error(driver)
    enter_key(driver, "mgk_deadbeef_wrong")
    wait(driver).until(lambda d: "unknown or revoked" in text_of(d, "key-dialog-error"))
    shot("admin-key-refused")
    enter_key(driver, server.keys["admin"])
    message = visible(driver, "#models-message .success-panel")
    assert "Model old is now active" in message.text
    visible(driver, '#models-table tr[data-version="old"][data-status="active"]')
    wait(driver).until(lambda d: "live: old" in text_of(d, "live-model"))
    assert server.api("/models")["active"] == "old"
    shot("activated")
    # roll forward again with the admin key the tab now keeps: no prompt this time
    driver.find_element(By.CSS_SELECTOR, '[data-activate="new"]').click()
    wait(driver).until(lambda d: "Model new is now active" in text_of(d, "models-message"))
    assert not key_dialog_open(driver)
    wait(driver, 15).until(lambda d: server.api("/readyz")["model_version"] == "new")


# -- 6. errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hash_", "words"),
    [
        ("#/items/no-such-item", ["Could not load item", "no item 'no-such-item'", "HTTP 404"]),
        ("#/jobs/0123456789abcdef", ["Could not load job", "no job", "HTTP 404"]),
        ("#/users/7?k=5&category=no-such-label", ["No item matches"]),
        ("#/nowhere", ["Page not found"]),
        ("#/items/%E0%A4%A", ["Page not found", "not a valid address"]),
    ],
)
def test_api_errors_are_readable_messages(
    driver: WebDriver, server: Server, hash_: str, words: list[str]
) -> None:
    go(driver, server, hash_)
    wait(driver).until(lambda d: all(w in text_of(d, "view") for w in words))
    assert not key_dialog_open(driver)


# -- 7. retraining -------------------------------------------------------------------------------
def test_a_retrain_started_with_an_admin_key_reaches_a_terminal_status(
    driver: WebDriver, server: Server, shot
) -> None:
    # back to the read key: starting a retrain must ask for an admin one
    driver.execute_script(
        "sessionStorage.setItem('margo.apiKey', arguments[0])", server.keys["read"]
    )
    go(driver, server, "#/jobs")
    visible(driver, "#retrain-epochs").send_keys("3")
    driver.find_element(By.ID, "retrain-note").send_keys("from the dashboard test")
    driver.find_element(By.ID, "retrain-submit").click()
    assert "needs role admin" in dialog_error(driver)
    enter_key(driver, server.keys["admin"])
    wait(driver).until(lambda d: "#/jobs/" in d.current_url)
    job_id = driver.current_url.rsplit("/", 1)[1]
    detail = visible(driver, "#job-detail[data-status]")
    shot("job-started")
    try:
        wait(driver, 90).until(lambda d: detail.get_attribute("data-status") in TERMINAL)
    except TimeoutException:
        pytest.fail(
            f"job {job_id} is still {detail.get_attribute('data-status')}:\n"
            f"{json.dumps(server.api(f'/jobs/{job_id}'), indent=1)}\n{server.log_tail()}"
        )
    job = server.api(f"/jobs/{job_id}")
    assert detail.get_attribute("data-status") == job["status"]
    assert job["params"]["hyperparameters"]["epochs"] == 3
    assert job["note"] == "from the dashboard test"
    if job["status"] == "succeeded":
        assert visible(driver, "#job-result").text == job["result_version"]
    if job["error"]:
        assert job["error"].splitlines()[0] in driver.find_element(By.ID, "job-error").text
    assert not driver.find_elements(By.ID, "job-cancel")  # nothing to cancel any more
    shot("job-finished")
    # the list shows it with the same status
    go(driver, server, "#/jobs")
    row = visible(driver, f'#jobs-table tr[data-job-id="{job_id}"]')
    assert row.get_attribute("data-status") == job["status"]
    assert console_errors(driver) == []


def test_a_running_retrain_can_be_cancelled_from_its_page(
    driver: WebDriver, server: Server, shot
) -> None:
    # the tab keeps the admin key from the test before: no prompt now
    go(driver, server, "#/jobs")
    epochs = visible(driver, "#retrain-epochs")
    epochs.send_keys("1000")
    visible(driver, "#retrain-form details summary").click()
    driver.find_element(By.ID, "retrain-hyperparameters").send_keys('{"patience": 1000}')
    driver.find_element(By.ID, "retrain-submit").click()
    wait(driver).until(lambda d: "#/jobs/" in d.current_url)
    assert not key_dialog_open(driver)
    job_id = driver.current_url.rsplit("/", 1)[1]
    detail = visible(driver, "#job-detail[data-status]")
    wait(driver, 30).until(lambda d: detail.get_attribute("data-status") == "running")
    visible(driver, "#job-cancel").click()
    visible(driver, "#job-message .success-panel")
    wait(driver, 30).until(lambda d: detail.get_attribute("data-status") in TERMINAL)
    job = server.api(f"/jobs/{job_id}")
    assert job["status"] == detail.get_attribute("data-status") == "cancelled"
    shot("cancelled")


# -- 8. small screens ----------------------------------------------------------------------------
def test_the_page_fits_a_phone_screen(driver: WebDriver, server: Server, shot) -> None:
    size = driver.get_window_size()
    driver.set_window_size(390, 844)
    try:
        go(driver, server, "#/users/7?k=5")
        visible(driver, "#rec-list > li")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        shot("phone")
    finally:
        driver.set_window_size(size["width"], size["height"])
