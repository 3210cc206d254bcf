"""What each channel puts on the wire (pure builders), how provider statuses are classified, and
the RecordingChannel fake."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.chassis.errors import PermanentError, SafeError, safe_reason
from services.notifications.adapters.channels import (
    Channel,
    ChannelKind,
    DeliveryError,
    DeliveryFailed,
    DeliveryRejected,
    HttpSmsChannel,
    OutboundMessage,
    Receipt,
    RecordingChannel,
    SmtpEmailChannel,
    WebhookChannel,
    delivery_ref,
    email_message,
    http_outcome,
    message_id_for,
    pagerduty_trigger,
    sent_sms_in,
    sms_body,
    sms_form,
    text_with_links,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ACK = ("https://taper.example/ack?sig=abc", "Acknowledge")


def message(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": uuid.uuid4(),
        "channel": ChannelKind.WEBHOOK,
        "address": "routing-key-1",
        "idempotency_key": "taper-episode-e1-level-1",
        "subject": "RED withdrawal escalation (level 1)",
        "body": "Patient check-in crossed the RED threshold.",
    }
    values.update(overrides)
    return OutboundMessage(**values)


# --- PagerDuty -----------------------------------------------------------------------------------


def test_pagerduty_trigger_has_the_events_v2_shape() -> None:
    episode = uuid.uuid4()
    body = pagerduty_trigger(
        message(severity="RED", details={"episode_id": str(episode), "level": 1}, links=(ACK,))
    )
    assert body == {
        "routing_key": "routing-key-1",
        "event_action": "trigger",
        "dedup_key": "taper-episode-e1-level-1",
        "payload": {
            "summary": "RED withdrawal escalation (level 1)",
            "severity": "critical",
            "source": "taper-notifications",
            "component": "escalation",
            "custom_details": {
                "episode_id": str(episode),
                "level": 1,
                "message": "Patient check-in crossed the RED threshold.",
            },
        },
        "links": [{"href": ACK[0], "text": "Acknowledge"}],
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("RED", "critical"), ("AMBER", "warning"), (None, "info"), ("GREEN", "info")],
)
def test_pagerduty_severity_mapping(severity: str | None, expected: str) -> None:
    assert pagerduty_trigger(message(severity=severity))["payload"]["severity"] == expected


def test_pagerduty_body_is_the_same_on_every_retry() -> None:
    m = message(details={"episode_id": "e1"}, links=(ACK,))
    assert pagerduty_trigger(m) == pagerduty_trigger(m)


def test_pagerduty_without_links_sends_an_empty_list() -> None:
    assert pagerduty_trigger(message())["links"] == []


# --- email ---------------------------------------------------------------------------------------


def test_text_with_links_appends_one_line_per_link() -> None:
    m = message(body="Your session moved.\n", links=(ACK, ("https://x.example/s", "Session")))
    assert text_with_links(m) == (
        "Your session moved.\n\nAcknowledge: https://taper.example/ack?sig=abc\n"
        "Session: https://x.example/s"
    )
    assert text_with_links(message(body="no links")) == "no links"


def test_email_message_headers_and_body() -> None:
    m = message(channel=ChannelKind.EMAIL, address="pat@example.org", links=(ACK,))
    email = email_message(m, "care@taper.example", NOW)
    assert email["From"] == "care@taper.example"
    assert email["To"] == "pat@example.org"
    assert email["Subject"] == "RED withdrawal escalation (level 1)"
    assert email["Date"] == "Mon, 02 Mar 2026 09:30:00 +0000"
    assert email["Message-ID"] == "<taper-episode-e1-level-1@taper.invalid>"
    assert email.get_content_type() == "text/plain"
    assert email.get_content() == text_with_links(m) + "\n"


def test_message_id_is_deterministic_per_idempotency_key() -> None:
    one = email_message(message(address="a@example.org"), "s@taper.example", NOW)
    two = email_message(message(address="a@example.org"), "s@taper.example", datetime.now(UTC))
    assert one["Message-ID"] == two["Message-ID"]


def test_non_ascii_body_round_trips() -> None:
    email = email_message(message(address="a@example.org", body="Héllo — ça va?"), "s@t.io", NOW)
    parsed = email.get_content()
    assert parsed == "Héllo — ça va?\n"


@pytest.mark.parametrize("key", ["has space", "a@b", "<x>", ""])
def test_message_id_refuses_keys_that_would_break_the_header(key: str) -> None:
    with pytest.raises(ValueError):
        message_id_for(key)


def test_a_header_injection_attempt_cannot_build_a_message() -> None:
    with pytest.raises(ValueError):
        email_message(message(address="a@example.org\nBcc: b@example.org"), "s@t.io", NOW)


async def test_an_unbuildable_email_is_rejected_without_echoing_the_address() -> None:
    channel = SmtpEmailChannel("127.0.0.1", 1, "s@taper.example")
    with pytest.raises(DeliveryRejected) as caught:
        await channel.send(message(channel=ChannelKind.EMAIL, address="victim@example.org\nX: y"))
    assert "victim" not in safe_reason(caught.value)


# --- SMS -----------------------------------------------------------------------------------------


def test_sms_form() -> None:
    m = message(channel=ChannelKind.SMS, address="+447700900123", body="Reminder", links=(ACK,))
    assert sms_form(m, "+447700900000") == {
        "To": "+447700900123",
        "From": "+447700900000",
        "Body": "Reminder\n\nAcknowledge: https://taper.example/ack?sig=abc\n"
        f"Ref {delivery_ref(m.delivery_id)}",
    }


def test_the_sms_ref_is_short_stable_per_delivery_and_says_nothing_else() -> None:
    d = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert delivery_ref(d) == delivery_ref(uuid.UUID(str(d)))
    assert len(delivery_ref(d)) == 8 and delivery_ref(d).isalnum()
    assert delivery_ref(d) != delivery_ref(uuid.uuid4())
    assert str(d)[:8] not in delivery_ref(d)


def test_a_sent_sms_is_found_in_the_providers_list_by_its_ref_and_number_only() -> None:
    m = message(channel=ChannelKind.SMS, address="+447700900123", body="Page")
    mine = {"sid": "SM1", "to": "+447700900123", "body": sms_body(m), "status": "delivered"}
    other = message(channel=ChannelKind.SMS, address="+447700900123", body="Page")
    theirs = {"sid": "SM2", "to": "+447700900123", "body": sms_body(other), "status": "sent"}
    assert sent_sms_in({"messages": [theirs, mine]}, m) == Receipt("SM1")
    assert sent_sms_in({"messages": [theirs]}, m) is None
    assert sent_sms_in({"messages": [{**mine, "to": "+15550000000"}]}, m) is None
    assert sent_sms_in({"messages": [{**mine, "status": "failed"}]}, m) is None
    assert sent_sms_in({"unexpected": 1}, m) is None
    assert sent_sms_in([mine], m) is None


# --- status classification -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int) -> None:
    assert http_outcome("webhook", status) is None


@pytest.mark.parametrize("status", [301, 408, 429, 500, 502, 503, 504])
def test_retryable_statuses_fail_transiently(status: int) -> None:
    error = http_outcome("webhook", status)
    assert isinstance(error, DeliveryFailed) and not isinstance(error, PermanentError)
    assert error.status == status
    assert safe_reason(error) == f"DeliveryFailed: webhook answered {status}"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    error = http_outcome("sms provider", status)
    assert isinstance(error, DeliveryRejected) and isinstance(error, PermanentError)
    assert error.status == status


def test_error_hierarchy() -> None:
    assert issubclass(DeliveryFailed, DeliveryError) and issubclass(DeliveryError, SafeError)
    assert issubclass(DeliveryRejected, DeliveryError)
    assert not issubclass(DeliveryFailed, PermanentError)


# --- the port and the fake -----------------------------------------------------------------------


async def test_every_adapter_satisfies_the_port() -> None:
    channels: list[Channel] = [
        WebhookChannel("http://127.0.0.1:1/"),
        SmtpEmailChannel("127.0.0.1", 1, "s@taper.example"),
        HttpSmsChannel("http://127.0.0.1:1", "AC1", "token", "+15550000000"),
        RecordingChannel(ChannelKind.SMS),
    ]
    assert [c.kind for c in channels] == [
        ChannelKind.WEBHOOK,
        ChannelKind.EMAIL,
        ChannelKind.SMS,
        ChannelKind.SMS,
    ]
    for c in channels:
        await c.aclose()


async def test_recording_channel_records_and_returns_the_idempotency_key() -> None:
    channel = RecordingChannel(ChannelKind.EMAIL)
    m = message(channel=ChannelKind.EMAIL)
    assert await channel.send(m) == Receipt(provider_id="taper-episode-e1-level-1")
    assert channel.sent == [m]
    assert channel.attempts == 1


async def test_recording_channel_fails_then_rejects_on_demand() -> None:
    channel = RecordingChannel(ChannelKind.SMS)
    channel.fail_next, channel.reject_next = 2, 1
    m = message(channel=ChannelKind.SMS)
    for _ in range(2):
        with pytest.raises(DeliveryFailed):
            await channel.send(m)
    with pytest.raises(DeliveryRejected):
        await channel.send(m)
    await channel.send(m)
    assert channel.sent == [m]
    assert channel.attempts == 4
    await channel.aclose()
    assert channel.closed
