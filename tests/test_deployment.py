"""``compose.yaml``, the production shape: it parses, each of the service's containers runs
a command that exists in the image, every variable it gives them is documented in the
README, migrations run once before the instances, and everything has a health check."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv: the same pinned install as the image's


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def ours(compose: dict) -> dict[str, dict]:
    """The containers of the service's own image (built from the Dockerfile)."""
    return {name: spec for name, spec in compose["services"].items()
            if spec.get("image", "").startswith("clinic-scheduling")}


def copied_into_the_image() -> set[str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied: set[str] = set()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            copied.update(line.split()[1:-1])
    return copied


def documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    names: set[str] = set()
    for row in re.findall(r"^\|([^|]+)\|", readme, flags=re.MULTILINE):
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row))
    return names


def test_the_shape(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate"} <= set(services)
    commands = {name: spec["command"] for name, spec in ours(compose).items()}
    apis = [n for n, c in commands.items() if c[0] == "gunicorn"]
    schedulers = [n for n, c in commands.items() if c[-1] == "service.scheduler"]
    assert len(apis) == 2 and len(schedulers) == 2
    assert commands["migrate"][-1] == "migrate"
    for name in (*apis, *schedulers):  # after the migrations, run once
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://")
    for name in apis:  # several instances share the limits
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name, spec in services.items():
        if name != "migrate":
            assert spec.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "/readyz" in " ".join(services[apis[0]]["healthcheck"]["test"])


def test_every_command_exists_in_the_image(compose):
    copied = copied_into_the_image()
    assert {"service", "gunicorn.conf.py", "alembic.ini", "migrations"} <= copied
    for name, spec in ours(compose).items():
        command = spec["command"]
        executable = command[0]
        if executable == "python":
            assert command[1] == "-m", name
            assert importlib.util.find_spec(command[2]) is not None, name
            assert command[2].split(".")[0] in copied, name
            continue
        # A console script the image's pip install provides (the same pins as here).
        assert (BIN / executable).exists(), f"{name}: {executable} is not installed"
        for option, value in zip(command, command[1:], strict=False):
            if option == "--config":
                assert value in copied, f"{name}: {value} is not copied into the image"
            if option == "--app":
                assert importlib.util.find_spec(value) is not None, name
        if executable == "gunicorn":
            module, _, attribute = command[-1].partition(":")
            assert importlib.util.find_spec(module) is not None and attribute == "app"


def test_every_variable_given_to_the_service_is_documented(compose):
    documented = documented_variables()
    assert "DATABASE_URL" in documented  # the table was read
    for name, spec in ours(compose).items():
        missing = set(spec.get("environment", {})) - documented
        assert not missing, f"{name} sets variables the README does not document: {missing}"


def test_the_stop_grace_covers_the_drain_and_the_graceful_timeout(compose):
    for spec in ours(compose).values():
        env = spec["environment"]
        grace = int(str(spec.get("stop_grace_period", "10s")).rstrip("s"))
        needed = (float(env.get("DRAIN_SECONDS", 0)) + float(env.get("GRACEFUL_TIMEOUT", 0))
                  + float(env.get("SCHEDULER_GRACE_SECONDS", 0)))
        assert grace >= needed, spec["command"]
