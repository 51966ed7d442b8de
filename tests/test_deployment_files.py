"""The deployment files stay coherent with the app: docker-compose.yml parses, every service
the distributed shape needs is there with a healthcheck, and the commands name real modules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_it_defines_the_distributed_shape(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat", "sandbox-engine"}
    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
        assert env["AGENTDECK_RUNNER"] == "celery"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]


def test_it_keeps_the_web_container_healthy_without_workers(compose):
    """The container health is liveness (/healthz), not readiness: workers or Redis being down
    must not get the web container restarted or taken out of the load balancer."""
    web = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert "/healthz" in web and "/readyz" not in web
    assert "/healthz" in (ROOT / "Dockerfile").read_text().split("HEALTHCHECK", 1)[1].splitlines()[0]


def test_it_bounds_the_postgres_connections_of_the_shipped_shape(compose):
    """web + one worker container + beat, each process at most DB_POOL_MAX connections: within
    the documented budget of 20. A worker container is one process (the threads pool holding
    many runs) unless its command asks for prefork, which forks --concurrency processes."""
    services = compose["services"]
    pool = {name: int(services[name]["environment"]["DB_POOL_MAX"]) for name in ("web", "worker", "beat")}
    command = services["worker"]["command"]
    processes = 1
    if "--pool=prefork" in command or ("--pool" in command and command[command.index("--pool") + 1] == "prefork"):
        processes = next(int(arg.split("=")[1]) for arg in command if arg.startswith("--concurrency="))
    budget = pool["web"] + processes * pool["worker"] + pool["beat"]
    assert budget <= 20, pool
    assert f"= {budget} with one worker" in (ROOT / "docker-compose.yml").read_text()


def test_it_names_settings_the_app_reads(compose):
    settings_text = (ROOT / "config" / "settings.py").read_text()
    for name in compose["services"]["web"]["environment"]:
        assert f'"{name}"' in settings_text, f"{name} is not read by config/settings.py"


def test_it_builds_from_the_apps_in_the_repository():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("config", "authz", "orchestrator", "mcpgateway", "dashboard", "templates", "static"):
        assert (ROOT / folder).is_dir()
        assert f"COPY {folder} {folder}" in dockerfile


def test_it_passes_docker_compose_config_when_available():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` here; the structural checks above stand in for it")
    result = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True, env={"SECRET_KEY": "x", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
