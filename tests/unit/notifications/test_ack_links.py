"""Signed acknowledge links: bound to one escalation and clinician, expiring on the service clock,
and never interchangeable with an API bearer token (their own secret and audience)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from services.chassis.auth import Role, TokenVerifier, issue_dev_token
from services.notifications.adapters.ack_links import AckClaim, AckLinks, InvalidLink
from services.notifications.settings import NotificationsSettings

NOW = datetime(2026, 3, 3, 14, tzinfo=UTC)
SETTINGS = NotificationsSettings(environment="test")
LINKS = AckLinks(SETTINGS.ack_link_secret, "https://taper.example/ack", timedelta(hours=1))


def test_a_link_names_its_escalation_and_clinician_until_it_expires() -> None:
    claim = AckClaim(uuid.uuid4(), "dr-ada")
    url = LINKS.url(claim, NOW)
    token = url.removeprefix("https://taper.example/ack/")
    assert LINKS.verify(token, NOW + timedelta(minutes=59)) == claim
    with pytest.raises(InvalidLink):
        LINKS.verify(token, NOW + timedelta(hours=1))


def test_a_tampered_link_or_one_signed_with_another_secret_is_refused() -> None:
    token = LINKS.token(AckClaim(uuid.uuid4(), "dr-ada"), NOW)
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidLink):
        LINKS.verify(f"{header}.{payload}.{signature[::-1]}", NOW)
    other = AckLinks("x" * 40, "https://taper.example/ack", timedelta(hours=1))
    with pytest.raises(InvalidLink):
        other.verify(token, NOW)


def test_links_and_api_tokens_are_not_interchangeable() -> None:
    api_token = issue_dev_token(SETTINGS, subject="dr-ada", role=Role.CLINICIAN, now=NOW)
    with pytest.raises(InvalidLink):
        LINKS.verify(api_token, NOW)
    link_token = LINKS.token(AckClaim(uuid.uuid4(), "dr-ada"), datetime.now(UTC))
    with pytest.raises(HTTPException) as refused:
        TokenVerifier(SETTINGS).verify(link_token)
    assert refused.value.status_code == 401


def test_production_refuses_the_development_link_secret() -> None:
    with pytest.raises(ValueError, match="ACK_LINK_SECRET"):
        NotificationsSettings(
            environment="production",
            jwt_secret="y" * 40,
            jwt_jwks_url="https://idp.example/.well-known/jwks.json",
            database_url="postgresql+asyncpg://svc@db.example/svc",
            kafka_replication_factor=3,
        )
