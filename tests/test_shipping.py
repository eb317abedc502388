"""What ships beside the code: docker-compose.yml, .env.example, the README and the Makefile
agree with each other and with service/settings.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "redis", "migrate", "trainer-init", "api", "proxy", "worker"}


def compose_command() -> list[str]:
    """``docker compose`` (v2) or ``docker-compose`` (v1); skip, with the reason, if neither."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    # the reason names MARGO_TEST_: under MARGO_TEST_REQUIRE_SERVICES=1 (CI) this skip fails
    pytest.skip(
        "neither `docker compose` nor `docker-compose` is installed (.ci/run installs it; "
        "MARGO_TEST_REQUIRE_SERVICES=1 turns this skip into a failure)"
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    result = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(ROOT)},  # no stray overrides
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_names_every_service(compose: dict) -> None:
    assert set(compose["services"]) == SERVICES


def test_compose_start_order_and_health(compose: dict) -> None:
    services = compose["services"]

    def needs(name: str) -> dict[str, str]:
        deps = services[name].get("depends_on", {})
        return {k: v["condition"] for k, v in deps.items()}

    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("api") == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
        "trainer-init": "service_completed_successfully",
    }
    assert needs("worker")["migrate"] == "service_completed_successfully"
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["margo", "db", "upgrade"]
    assert services["worker"]["command"] == ["margo", "worker"]
    api = services["api"]["command"]
    assert api[:2] == ["margo", "serve"] and api[api.index("--workers") + 1] == "2"
    init = " ".join(services["trainer-init"]["command"])
    assert "margo import synth" in init and "margo train" in init and "manifest.json" in init


def test_compose_puts_nginx_in_front_of_the_api(compose: dict) -> None:
    services = compose["services"]
    assert "ports" not in services["api"], "the API is reached through the proxy only"
    proxy = services["proxy"]
    assert [p["target"] for p in proxy["ports"]] == [8080]
    assert any("docker/nginx.conf" in str(v) for v in proxy["volumes"])
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    for bound in ("client_header_timeout 10s", "client_body_timeout 10s", "keepalive_timeout 5s",
                  "client_max_body_size 16m", "server api:8000", "listen 8080"):  # fmt: skip
        assert bound in conf, bound


def test_compose_volumes_and_settings(compose: dict) -> None:
    assert {"pgdata", "models"} <= set(compose["volumes"])
    services = compose["services"]
    for name in ("migrate", "trainer-init", "api", "worker"):
        env = services[name]["environment"]
        assert env["MARGO_PUBLIC_READS"] == "false", name
        assert env["MARGO_DATABASE_URL"].startswith("postgresql://"), name
        assert env["MARGO_REDIS_URL"].startswith("redis://redis:"), name
        volumes = " ".join(str(v) for v in services[name]["volumes"])
        assert "/data/models" in volumes, name


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_env_example_holds_valid_settings() -> None:
    env = env_example()
    margo = {k[len("MARGO_") :].lower(): v for k, v in env.items() if k.startswith("MARGO_")}
    unknown = set(margo) - set(Settings.model_fields)
    assert not unknown, f".env.example names settings that do not exist: {unknown}"
    settings = Settings(**margo)  # every value parses
    assert settings.public_reads is False


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    table = set(re.findall(r"`(MARGO_[A-Z0-9_]+)`", readme()))
    # grouped rows like `MARGO_CACHE_ENABLED` / `_SIZE` name the rest by suffix
    suffixes = set(re.findall(r"`(_[A-Z0-9_]+)`", readme()))
    missing = []
    for field in Settings.model_fields:
        name = f"MARGO_{field.upper()}"
        if name in table:
            continue
        if any(name.endswith(s) and any(t.startswith(name[: -len(s)]) for t in table)
               for s in suffixes):  # fmt: skip
            continue
        missing.append(name)
    assert not missing, f"README's settings table lacks {missing}"


def make_demo_lines() -> list[str]:
    """What ``make demo`` prints after the server's banner, from ``make -n`` (nothing runs)."""
    out = subprocess.run(
        ["make", "-n", "demo", "VENV=/nonexistent"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    script = out[out.index("key=") :]
    script = script[: script.index("MARGO_PUBLIC_READS=true")]
    fake = script.replace(
        "/nonexistent/bin/margo keys create --role admin --name make-demo", "echo mgk_x_y"
    )
    shown = subprocess.run(["bash", "-c", fake], capture_output=True, text=True, check=True)
    return [line.strip() for line in shown.stdout.splitlines() if line.strip()]


def test_readme_shows_the_commands_make_demo_prints() -> None:
    lines = make_demo_lines()
    curls = [line for line in lines if line.startswith("curl")]
    assert len(curls) >= 3
    assert any("/recommendations" in c and "explain=true" in c for c in curls)
    assert any("/reliability" in c for c in curls)
    assert any("-X POST" in c and "/retrain" in c and "$MARGO_KEY" in c for c in curls)
    text = readme()
    for line in lines:
        if line.startswith(("curl", "-H")):
            assert line in text, f"README lacks the line make demo prints: {line}"


def test_readme_quickstart_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    text = readme()
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "ruff check" in makefile and "MARGO_PUBLIC_READS=true" in makefile
