"""deploy/compose/compose.yaml: valid against the Compose Specification's JSON Schema
(check-jsonschema's built-in vendor.compose-spec), the shape of deploy/cluster_shape.py, and every
variable it gives a service is a real setting of that service, which accepts the whole set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import cluster_shape
from tests.deploy.conftest import ROOT, setting_env_names, settings_class

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
_DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves anchors and merge keys
    return data


def service_of(compose_name: str) -> str:
    return compose_name.replace("-", "_")


def app_services() -> dict[str, dict[str, Any]]:
    return {
        service_of(name): svc
        for name, svc in compose()["services"].items()
        if service_of(name) in cluster_shape.SERVICES
    }


def test_valid_against_the_compose_specification_schema() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_stack_is_all_there() -> None:
    services = compose()["services"]
    kafka = [s for s in services.values() if s.get("image", "").startswith("apache/kafka:")]
    assert len(kafka) == cluster_shape.BROKERS
    assert {s["image"] for s in kafka} == {"apache/kafka:4.1.1"}
    assert sorted(app_services()) == sorted(cluster_shape.SERVICES)
    assert "postgres" in services and "gateway" in services
    observability = {n for n, s in services.items() if "observability" in s.get("profiles", [])}
    assert observability == {"otel-collector", "jaeger", "prometheus"}
    assert all("profiles" not in s for n, s in services.items() if n not in observability)


def test_kafka_has_the_rehearsed_durability() -> None:
    for svc in compose()["services"].values():
        if not svc.get("image", "").startswith("apache/kafka:"):
            continue
        env = svc["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(cluster_shape.REPLICATION_FACTOR)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == str(cluster_shape.MIN_INSYNC_REPLICAS)
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == cluster_shape.BROKERS


def test_each_service_runs_the_one_image_with_its_command() -> None:
    for name, svc in app_services().items():
        assert svc["build"]["dockerfile"] == "deploy/container/Dockerfile"
        assert svc["command"] == ["serve", name]
        assert svc["stop_grace_period"] == "60s"


def _interpolated(value: object) -> str:
    """Compose's ${VAR:-default} with VAR unset (what a plain `docker compose up` gives)."""
    return _DEFAULTED.sub(lambda m: m.group(2), str(value))


@pytest.mark.parametrize("service", cluster_shape.SERVICES)
def test_every_variable_is_a_real_setting_and_the_service_accepts_them(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: _interpolated(v) for k, v in app_services()[service]["environment"].items()}
    unknown = set(env) - setting_env_names(service)
    assert not unknown, f"{service}: no setting reads {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith(("TAPER_", "KAFKA_", "OTEL_", service.upper() + "_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(service)()
    assert settings.http_host == "0.0.0.0"
    assert settings.effective_database_url.startswith("postgresql+asyncpg://")
    assert settings.kafka_replication_factor == cluster_shape.REPLICATION_FACTOR
