"""Fail closed (issue 14, defect 7): no environment, no start; production refuses what only
development may use (few Kafka replicas, SQLite, the development pager)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.chassis.settings import ServiceSettings
from services.notifications.settings import NotificationsSettings

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "jwt_secret": "p" * 40,
    "jwt_jwks_url": "https://idp.example/.well-known/jwks.json",
    "database_url": "postgresql+asyncpg://svc@db.example/svc",
    "kafka_replication_factor": 3,
}
NOTIFICATIONS_PRODUCTION: dict[str, Any] = PRODUCTION | {
    "ack_link_secret": "a" * 40,
    "page_webhook_url": "https://events.pagerduty.com/v2/enqueue",
    "page_routing_key": "R0UT1NGKEY",
    "public_base_url": "https://taper.example",
}


def test_without_taper_env_settings_refuse_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TAPER_ENV", raising=False)
    with pytest.raises(ValidationError, match="TAPER_ENV must be set"):
        ServiceSettings(service_name="svc")
    monkeypatch.setenv("TAPER_ENV", "development")
    assert ServiceSettings(service_name="svc").environment == "development"
    monkeypatch.setenv("TAPER_ENV", "staging")  # not one of the three
    with pytest.raises(ValidationError, match=r"(?i)taper_env"):
        ServiceSettings(service_name="svc")


@pytest.mark.parametrize(
    "module", ["services.notifications.entrypoints.main", "services.chassis.ops"]
)
def test_a_process_started_without_taper_env_refuses_to_start(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TAPER_ENV"}
    args = [sys.executable, "-m", module] + (["lag", "g"] if "ops" in module else [])
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode != 0
    assert b"TAPER_ENV must be set" in done.stderr


def test_production_settings_that_are_complete_are_accepted() -> None:
    assert (
        ServiceSettings(service_name="svc", **PRODUCTION).kafka_min_insync_replicas_effective == 2
    )
    assert NotificationsSettings(**NOTIFICATIONS_PRODUCTION).environment == "production"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"kafka_replication_factor": 1}, "KAFKA_REPLICATION_FACTOR"),
        ({"kafka_replication_factor": 2}, "KAFKA_REPLICATION_FACTOR"),
        ({"kafka_min_insync_replicas": 1}, "KAFKA_MIN_INSYNC_REPLICAS"),
        ({"database_url": ""}, "SVC_DATABASE_URL"),
        ({"database_url": "sqlite+aiosqlite:///var/svc.db"}, "SVC_DATABASE_URL"),
    ],
)
def test_production_refuses_what_is_not_durable(override: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        ServiceSettings(service_name="svc", **(PRODUCTION | override))
    ServiceSettings(service_name="svc", **(PRODUCTION | override | {"environment": "test"}))


def test_min_insync_above_the_replication_factor_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="KAFKA_MIN_INSYNC_REPLICAS is above"):
        ServiceSettings(service_name="svc", environment="test", kafka_min_insync_replicas=2)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"page_webhook_url": "http://127.0.0.1:8199/pages"}, "PAGE_WEBHOOK_URL"),
        ({"page_webhook_url": "http://localhost/pages"}, "PAGE_WEBHOOK_URL"),
        ({"page_routing_key": "taper-dev-routing-key"}, "PAGE_ROUTING_KEY"),
        ({"public_base_url": "http://127.0.0.1:8080"}, "PUBLIC_BASE_URL"),
        ({"ack_link_secret": "dev-only-ack-link-secret-change-me-0123456789"}, "ACK_LINK_SECRET"),
    ],
)
def test_production_refuses_the_development_pager_and_link_secret(
    override: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=f"NOTIFICATIONS_{named}"):
        NotificationsSettings(**(NOTIFICATIONS_PRODUCTION | override))
