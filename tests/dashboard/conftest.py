"""Fixtures of the dashboard's browser tests: real uvicorn servers on 127.0.0.1 (two small
trained models with keys required for reads; a synthetic bundle with public reads) and
Debian's headless chromium driven by selenium.

The browser and driver are found on PATH (``apt-get install chromium chromium-driver``) or at
MARGO_TEST_CHROMIUM / MARGO_TEST_CHROMEDRIVER; without them the browser tests skip, and CI
(.ci/run installs both) turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.auth import HEADER, create_api_key
from service.db.migrate import upgrade
from service.db.session import Database
from tests.service.factories import make_bundle

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM_ENV = "MARGO_TEST_CHROMIUM"
DRIVER_ENV = "MARGO_TEST_CHROMEDRIVER"
START_TIMEOUT_S = 60.0

# a dataset small enough to train in about a second on one core, with two modalities
SYNTH = ["--users", "120", "--items", "80", "--interactions", "1500",
         "--modalities", "image=16,text=16"]  # fmt: skip
TRAIN = ["--model", "margo", "--epochs", "4", "--patience", "3", "--dim", "16", "--threads", "1"]


def browser_paths() -> tuple[str, str]:
    chromium = os.environ.get(CHROMIUM_ENV) or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = os.environ.get(DRIVER_ENV) or shutil.which("chromedriver")
    missing = [
        f"{what} (apt-get install {package}, or set {env})"
        for what, found, package, env in (
            ("chromium", chromium, "chromium", CHROMIUM_ENV),
            ("chromedriver", driver, "chromium-driver", DRIVER_ENV),
        )
        if not found
    ]
    if missing:
        pytest.skip(f"browser tests need {' and '.join(missing)}: not found")
    assert chromium is not None and driver is not None
    return chromium, driver


def margo(*argv: str) -> None:
    """Run a ``margo`` command in this process; fail the test with its exit code."""
    from service.cli import main

    code = main(list(argv))
    assert code == 0, f"margo {' '.join(argv)} exited with {code}"


@dataclass
class Server:
    url: str
    root: Path
    keys: dict[str, str]
    process: subprocess.Popen
    log: Path

    def api(self, path: str, key: str = "read", **params: object) -> object:
        """GET from the API with a key of the given role (what the page should show)."""
        r = httpx.get(f"{self.url}{path}", params=params, headers={HEADER: self.keys[key]})
        r.raise_for_status()
        return r.json()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def run_server(root: Path, models: Path, *, public_reads: bool) -> Iterator[Server]:
    """uvicorn on a free port serving ``models`` from a fresh SQLite file in ``root``, with
    in-process jobs and cache; a read and an admin key exist."""
    database_url = f"sqlite:///{root / 'margo.db'}"
    upgrade(database_url)
    db = Database(database_url)
    with db.session() as session:
        keys = {
            role: create_api_key(session, role, f"dashboard-{role}") for role in ("read", "admin")
        }
    db.dispose()

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "MARGO_DATABASE_URL": database_url,
        "MARGO_MODEL_DIR": str(models),
        "MARGO_SNAPSHOT_DIR": str(root / "snapshots"),
        "MARGO_REDIS_URL": "",
        "MARGO_PUBLIC_READS": str(public_reads).lower(),
        "MARGO_POLL_INTERVAL_S": "0.5",
        "MARGO_TRAIN_THREADS": "1",
        "MARGO_LOG_FORMAT": "text",
    }
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", root, keys, process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the server exited:\n{server.log_tail()}"
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{server.log_tail()}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two trained models (``new`` live, ``old`` ready) whose dataset seeds SQL, so a retrain
    can run; reads need a key."""
    root = tmp_path_factory.mktemp("dashboard")
    data, models = root / "data", root / "models"
    margo("import", "synth", str(data), *SYNTH)
    margo("train", "--data", str(data), "--out", str(models / "old"), *TRAIN, "--seed", "1")
    time.sleep(1.1)  # created_at has one-second resolution: "new" must be the newest
    margo("train", "--data", str(data), "--out", str(models / "new"), *TRAIN, "--seed", "2")
    with run_server(root, models, public_reads=False) as running:
        yield running


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A synthetic bundle (tests/service/factories.py: random embeddings, so some modality
    contributions are negative) behind MARGO_PUBLIC_READS=true."""
    root = tmp_path_factory.mktemp("dashboard-public")
    make_bundle(root / "models" / "m1", n_users=40, n_items=300, seed=3)
    with run_server(root, root / "models", public_reads=True) as running:
        yield running


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    chromium, chromedriver = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-sync",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def shot(driver: object, request: pytest.FixtureRequest):  # noqa: ANN201 - a callable
    """shot("name") saves a screenshot to test-artifacts/dashboard/<test>-<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        driver.save_screenshot(str(path))
        return path

    yield save
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        save("failed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Remember each phase's report on the item, so ``shot`` can capture failures."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
