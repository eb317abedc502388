"""The reliability score on the dashboard, in a real headless chromium against a real server:
the audit page's score histograms and least/most reliable items with both numbers (score and
learned weight), the item page's score, and what a model without the score shows instead.

The bundles carry a score constructed in the test (tests/service/api/reliability_bundles.py):
what is checked is that the pages show what the API answers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.dashboard.browser import console_errors, go, item_ids, no_error_panel, visible, wait
from tests.dashboard.conftest import Server, run_server
from tests.service.api.reliability_bundles import make_format_1, write_test_bundle

ROWS = 5


@pytest.fixture(scope="module")
def scored_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dashboard-scored")
    write_test_bundle(root / "models" / "s1", seed=11, scored=True)
    with run_server(root, root / "models", public_reads=True) as running:
        yield running


@pytest.fixture(scope="module")
def old_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dashboard-old")
    make_format_1(write_test_bundle(root / "models" / "v1", seed=12, scored=False))
    with run_server(root, root / "models", public_reads=True) as running:
        yield running


def shown(text: str) -> float:
    """The number a table cell shows (it may carry a pill after it)."""
    return float(text.split()[0])


def table_css(modality: str, order: str) -> str:
    return f'table.audit-table[data-modality="{modality}"][data-order="{order}"]'


def check_tables(driver: WebDriver, server: Server, modalities: list[str], by: str) -> None:
    """Each modality's two tables list the API's items in its order, with its numbers."""
    for modality in modalities:
        for order in ("asc", "desc"):
            params = {"modality": modality, "order": order, "limit": ROWS}
            expected = server.api("/reliability", **params, **({"by": by} if by else {}))
            css = table_css(modality, order)
            wait(driver).until(
                lambda d, css=css, want=expected: item_ids(d, f"{css} tbody tr")
                == [i["item_id"] for i in want["items"]]
            )
            table = driver.find_element(By.CSS_SELECTOR, css)
            assert table.get_attribute("data-by") == expected["by"]
            for tr, it in zip(
                table.find_elements(By.CSS_SELECTOR, "tbody tr"), expected["items"], strict=True
            ):
                assert float(tr.get_attribute("data-weight")) == pytest.approx(it["weight"])
                cells = [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
                assert shown(cells[3]) == pytest.approx(it["weight"], abs=5e-5)
                if it["score"] is None:
                    assert tr.get_attribute("data-score") is None and cells[1] == "–"
                else:
                    assert float(tr.get_attribute("data-score")) == pytest.approx(it["score"])
                    assert float(tr.get_attribute("data-confidence")) == pytest.approx(
                        it["confidence"]
                    )
                    assert shown(cells[1]) == pytest.approx(it["score"], abs=5e-4)
                    assert shown(cells[2]) == pytest.approx(it["confidence"], abs=5e-3)


def test_the_audit_shows_the_score_histograms_and_least_reliable_items(
    driver: WebDriver, scored_server: Server, shot
) -> None:
    go(driver, scored_server, f"#/audit?bins=10&rows={ROWS}")
    hist = scored_server.api("/reliability/histogram", bins=10, of="score")
    modalities = [m["modality"] for m in hist["modalities"]]
    assert modalities == ["image", "text"]
    wait(driver).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#score-histograms svg.histogram")) == 2
    )
    for m in hist["modalities"]:
        chart = driver.find_element(
            By.CSS_SELECTOR, f'#score-histograms svg.histogram[data-modality="{m["modality"]}"]'
        )
        bars = chart.find_elements(By.CSS_SELECTOR, "rect.bar")
        assert [int(b.get_attribute("data-count")) for b in bars] == m["counts"]
        assert [float(b.get_attribute("data-lo")) for b in bars] == pytest.approx(
            hist["edges"][:-1]
        )
    # the learned weights' histograms stay beside them
    assert len(driver.find_elements(By.CSS_SELECTOR, "#histograms svg.histogram")) == 2
    assert not driver.find_elements(By.ID, "score-absent")
    check_tables(driver, scored_server, modalities, by="")
    # the least reliable items come first: scores rise down the "asc" table
    rows = driver.find_elements(By.CSS_SELECTOR, f"{table_css('image', 'asc')} tbody tr")
    scores = [float(r.get_attribute("data-score")) for r in rows]
    assert scores == sorted(scores) and len(scores) == ROWS
    no_error_panel(driver)
    assert console_errors(driver) == []
    shot("audit-score")

    # ordering by the learned weight is one click away
    Select(driver.find_element(By.ID, "by-select")).select_by_value("weight")
    wait(driver).until(lambda d: "by=weight" in d.current_url)
    check_tables(driver, scored_server, modalities, by="weight")


def test_an_item_shows_its_score_beside_its_weight(
    driver: WebDriver, scored_server: Server, shot
) -> None:
    go(driver, scored_server, "#/items/i17")
    api = scored_server.api("/items/i17")["model"]
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".item-score")) == 2)
    for el in driver.find_elements(By.CSS_SELECTOR, ".item-score"):
        rel = api["reliability"][el.get_attribute("data-modality")]
        assert float(el.get_attribute("data-score")) == pytest.approx(rel["score"])
        assert float(el.get_attribute("data-confidence")) == pytest.approx(rel["confidence"])
        assert f"reliability score {rel['score']:.3f}" in el.text
    assert not driver.find_elements(By.ID, "item-score-absent")
    no_error_panel(driver)
    shot("item-score")


def test_a_model_without_the_score_says_why_and_orders_by_weight(
    driver: WebDriver, old_server: Server, shot
) -> None:
    go(driver, old_server, f"#/audit?rows={ROWS}")
    reason = old_server.api("/reliability/histogram", of="score")["reliability_absent"]
    assert reason and "format 1" in reason
    notice = visible(driver, "#score-absent")
    assert reason in notice.text
    assert not driver.find_elements(By.CSS_SELECTOR, "#score-histograms")
    visible(driver, "#histograms svg.histogram")
    check_tables(driver, old_server, ["image", "text"], by="")
    table = driver.find_element(By.CSS_SELECTOR, table_css("text", "asc"))
    assert table.get_attribute("data-by") == "weight"
    no_error_panel(driver)
    shot("audit-no-score")

    go(driver, old_server, "#/items/i3")
    assert reason in visible(driver, "#item-score-absent").text
    assert not driver.find_elements(By.CSS_SELECTOR, ".item-score")
