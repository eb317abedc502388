"""With MARGO_PUBLIC_READS=true the page reads without ever asking for a key; bars with
negative contributions stack left of the zero line."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.browser import (
    check_contribution_bars,
    console_errors,
    key_dialog_open,
    no_error_panel,
    text_of,
    visible,
    wait,
)
from tests.dashboard.conftest import Server

K = 20


def test_public_reads_need_no_key_and_negative_contributions_draw_left_of_zero(
    driver: WebDriver, public_server: Server, shot
) -> None:
    driver.get(f"{public_server.url}/#/users/u15?k={K}")
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rec-list > li")) == K)
    wait(driver).until(lambda d: "live: m1" in text_of(d, "live-model"))
    assert not key_dialog_open(driver)
    assert driver.execute_script("return sessionStorage.getItem('margo.apiKey')") is None

    api = public_server.api("/users/u15/recommendations", k=K)
    negative = [
        t["contribution"]
        for i in api["items"]
        for t in i["modalities"].values()
        if t["contribution"] < 0
    ]
    assert negative, "the synthetic bundle should give some negative contributions"
    check_contribution_bars(driver, api)
    assert driver.find_elements(By.CSS_SELECTOR, ".contrib-seg.negative")
    visible(driver, ".contrib-zero")
    no_error_panel(driver)
    shot("public-reads")

    # the audit works keyless as well
    driver.execute_script("location.hash = '#/audit'")
    visible(driver, "#histograms svg.histogram")
    assert not key_dialog_open(driver)
    assert console_errors(driver) == []
