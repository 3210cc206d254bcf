"""The delivery channels over real sockets: an aiosmtpd SMTP server and uvicorn HTTP receivers
on 127.0.0.1 ports (tests/notifications_receivers.py). No mocks, no broker, no database."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.chassis.errors import PermanentError, safe_reason
from services.notifications.adapters.channels import (
    ChannelKind,
    DeliveryError,
    DeliveryFailed,
    DeliveryRejected,
    HttpSmsChannel,
    OutboundMessage,
    SmtpEmailChannel,
    WebhookChannel,
    delivery_ref,
)
from tests.notifications_receivers import HttpReceiver, SmtpReceiver, closed_port

ACK = ("https://taper.example/ack?sig=abc123", "Acknowledge")
PATIENT_EMAIL = "patient.jones@example.org"
PATIENT_PHONE = "+447700900123"
SENDER = "care@taper.example"
SID, TOKEN, FROM = "AC0123456789abcdef", "s3cret-token", "+447700900000"


def page(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "delivery_id": uuid.uuid4(),
        "channel": ChannelKind.WEBHOOK,
        "address": "pd-routing-key",
        "idempotency_key": f"taper-episode-{uuid.uuid4()}-level-1",
        "subject": "RED withdrawal escalation (level 1)",
        "body": "Check-in crossed the RED threshold.",
        "severity": "RED",
        "details": {"episode_id": uuid.uuid4(), "level": 1},
        "links": (ACK,),
    }
    values.update(overrides)
    return OutboundMessage(**values)


def mail(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "channel": ChannelKind.EMAIL,
        "address": PATIENT_EMAIL,
        "subject": "Your session has moved",
        "body": "Your group session is now on Tuesday.",
        "severity": None,
        "details": {},
    }
    return page(**{**values, **overrides})


def sms(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "channel": ChannelKind.SMS,
        "address": PATIENT_PHONE,
        "subject": "Reminder",
        "body": "Your check-in is due today.",
        "severity": None,
        "details": {},
        "links": (),
    }
    return page(**{**values, **overrides})


def assert_no_phi(error: DeliveryError, *values: str) -> None:
    for text in (str(error), safe_reason(error), repr(error.args)):
        for value in values:
            assert value not in text
    # raised "from None": a logged traceback must not carry the library's message either
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


# --- webhook (PagerDuty Events v2) ---------------------------------------------------------------


@pytest.fixture
async def pd() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
async def webhook(pd: HttpReceiver) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(pd.url("/v2/enqueue"))
    yield channel
    await channel.aclose()


async def test_webhook_posts_an_events_v2_trigger(
    pd: HttpReceiver, webhook: WebhookChannel
) -> None:
    message = page()
    receipt = await webhook.send(message)

    [request] = pd.requests
    assert (request.method, request.path, request.status) == ("POST", "/v2/enqueue", 202)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == message.idempotency_key
    body = request.json
    assert body["routing_key"] == "pd-routing-key"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == message.idempotency_key
    assert body["links"] == [{"href": ACK[0], "text": "Acknowledge"}]
    payload = body["payload"]
    assert payload["summary"] == message.subject
    assert payload["severity"] == "critical"
    assert (payload["source"], payload["component"]) == ("taper-notifications", "escalation")
    assert payload["custom_details"] == {
        "episode_id": str(message.details["episode_id"]),
        "level": 1,
        "message": message.body,
    }
    assert receipt.provider_id == message.idempotency_key


@pytest.mark.parametrize(("severity", "expected"), [("AMBER", "warning"), (None, "info")])
async def test_webhook_severity_mapping(
    pd: HttpReceiver, webhook: WebhookChannel, severity: str | None, expected: str
) -> None:
    await webhook.send(page(severity=severity))
    assert pd.requests[0].json["payload"]["severity"] == expected


async def test_webhook_retry_of_the_same_message_sends_the_same_dedup_key(pd: HttpReceiver) -> None:
    pd.fail_first = 1
    channel = WebhookChannel(pd.url("/v2/enqueue"))
    message = page()
    with pytest.raises(DeliveryFailed):
        await channel.send(message)
    first = await channel.send(message)
    second = await channel.send(message)  # e.g. a resend after a crash before recording it
    await channel.aclose()

    assert [r.status for r in pd.requests] == [503, 202, 202]
    assert pd.dedup_keys() == {message.idempotency_key}
    assert {r.headers["idempotency-key"] for r in pd.requests} == {message.idempotency_key}
    assert first == second
    assert pd.requests[0].json == pd.requests[2].json


async def test_webhook_returns_the_providers_dedup_key(pd: HttpReceiver) -> None:
    # A provider may answer with its own key; that is the one to store.
    channel = WebhookChannel(pd.url("/v2/enqueue"))
    receipt = await channel.send(page(idempotency_key="our-key"))
    await channel.aclose()
    assert receipt.provider_id == "our-key" == pd.requests[0].json["dedup_key"]


async def test_webhook_propagates_the_trace_context(
    pd: HttpReceiver, webhook: WebhookChannel
) -> None:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        await webhook.send(page())
    assert pd.requests[0].headers["traceparent"] == (
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    )


async def test_webhook_503_is_transient(pd: HttpReceiver, webhook: WebhookChannel) -> None:
    pd.status = 503
    with pytest.raises(DeliveryFailed) as caught:
        await webhook.send(page())
    assert caught.value.status == 503
    assert not isinstance(caught.value, PermanentError)


async def test_webhook_400_is_permanent(pd: HttpReceiver, webhook: WebhookChannel) -> None:
    pd.status = 400
    message = page(address="secret-routing-key")
    with pytest.raises(DeliveryRejected) as caught:
        await webhook.send(message)
    assert isinstance(caught.value, PermanentError)
    assert safe_reason(caught.value) == "DeliveryRejected: webhook answered 400"
    assert_no_phi(caught.value, message.address, message.body)


async def test_webhook_connection_refused_is_transient() -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{closed_port()}/v2/enqueue")
    with pytest.raises(DeliveryFailed) as caught:
        await channel.send(page())
    await channel.aclose()
    assert safe_reason(caught.value) == "DeliveryFailed: webhook unreachable: ConnectError"
    assert caught.value.status is None


async def test_webhook_timeout_is_transient(pd: HttpReceiver) -> None:
    pd.delay_s = 2.0
    channel = WebhookChannel(pd.url("/v2/enqueue"), timeout_s=0.2)
    with pytest.raises(DeliveryFailed) as caught:
        await channel.send(page())
    await channel.aclose()
    assert "ReadTimeout" in str(caught.value)
    assert len(pd.requests) == 1  # it arrived: only the answer was lost, hence the dedup_key


# --- email (SMTP) --------------------------------------------------------------------------------


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpReceiver]:
    async with SmtpReceiver(refuse={"gone@example.org"}) as receiver:
        yield receiver


def email_channel(smtp: SmtpReceiver, **kwargs: Any) -> SmtpEmailChannel:
    return SmtpEmailChannel(smtp.host, smtp.port, SENDER, **kwargs)


async def test_email_arrives_with_subject_body_link_and_deterministic_message_id(
    smtp: SmtpReceiver,
) -> None:
    message = mail(body="Héllo — your session is now on Tuesday.")
    receipt = await email_channel(smtp).send(message)

    [received] = smtp.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [PATIENT_EMAIL]
    email = received.message
    assert email["From"] == SENDER
    assert email["To"] == PATIENT_EMAIL
    assert email["Subject"] == "Your session has moved"
    assert email["Date"]
    # aiosmtplib flattens with email.policy.SMTP (78 columns), so a long Message-ID is folded
    # onto a continuation line, and Python's parser keeps the folding space: compare stripped.
    assert email["Message-ID"].strip() == f"<{message.idempotency_key}@taper.invalid>"
    assert receipt.provider_id == email["Message-ID"].strip()
    content = email.get_content()
    assert content.startswith("Héllo — your session is now on Tuesday.\n")
    assert f"Acknowledge: {ACK[0]}" in content


async def test_email_resend_is_recognisably_the_same_message(smtp: SmtpReceiver) -> None:
    channel = email_channel(smtp)
    message = mail()
    first = await channel.send(message)
    second = await channel.send(message)
    assert first == second
    assert len({m.message["Message-ID"].strip() for m in smtp.messages}) == 1


async def test_email_451_is_transient_then_delivered() -> None:
    async with SmtpReceiver(fail_first=1) as smtp:
        channel = email_channel(smtp)
        message = mail()
        with pytest.raises(DeliveryFailed) as caught:
            await channel.send(message)
        assert caught.value.status == 451
        assert_no_phi(caught.value, PATIENT_EMAIL, message.body)
        await channel.send(message)
        assert smtp.attempts == 2 and len(smtp.messages) == 1


async def test_email_refused_recipient_is_permanent_and_not_named(smtp: SmtpReceiver) -> None:
    message = mail(address="gone@example.org")
    with pytest.raises(DeliveryRejected) as caught:
        await email_channel(smtp).send(message)
    assert caught.value.status == 550
    assert safe_reason(caught.value) == "DeliveryRejected: smtp recipient refused: 550"
    assert_no_phi(caught.value, "gone@example.org", "gone", message.body)
    assert smtp.messages == []


async def test_email_connection_refused_is_transient() -> None:
    channel = SmtpEmailChannel("127.0.0.1", closed_port(), SENDER, timeout_s=2)
    with pytest.raises(DeliveryFailed) as caught:
        await channel.send(mail())
    assert "unreachable" in str(caught.value)
    assert_no_phi(caught.value, PATIENT_EMAIL)


async def test_email_logs_in_when_credentials_are_given() -> None:
    async with SmtpReceiver(credentials=("taper", "pw")) as smtp:
        await email_channel(smtp, username="taper", password="pw").send(mail())
        [received] = smtp.messages
        assert received.authenticated


async def test_email_bad_credentials_are_a_configuration_fault_so_retried() -> None:
    async with SmtpReceiver(credentials=("taper", "pw")) as smtp:
        with pytest.raises(DeliveryFailed) as caught:
            await email_channel(smtp, username="taper", password="wrong").send(mail())
    assert caught.value.status == 535
    assert not isinstance(caught.value, PermanentError)


# --- SMS (Twilio-compatible) ---------------------------------------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
async def sms_channel(twilio: HttpReceiver) -> AsyncIterator[HttpSmsChannel]:
    channel = HttpSmsChannel(twilio.base_url + "/", SID, TOKEN, FROM)
    yield channel
    await channel.aclose()


async def test_sms_is_posted_form_encoded_with_basic_auth_and_idempotency_token(
    twilio: HttpReceiver, sms_channel: HttpSmsChannel
) -> None:
    message = sms(links=(ACK,))
    receipt = await sms_channel.send(message)

    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": PATIENT_PHONE,
        "From": FROM,
        "Body": f"Your check-in is due today.\n\nAcknowledge: {ACK[0]}\n"
        f"Ref {delivery_ref(message.delivery_id)}",
    }
    expected_auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected_auth}"
    assert request.headers["i-twilio-idempotency-token"] == message.idempotency_key
    assert request.status == 201
    assert receipt.provider_id is not None and receipt.provider_id.startswith("SM")


async def test_sms_retry_sends_the_same_token_and_gets_the_same_sid(
    twilio: HttpReceiver, sms_channel: HttpSmsChannel
) -> None:
    message = sms()
    first = await sms_channel.send(message)
    second = await sms_channel.send(message)
    assert first == second
    assert twilio.dedup_keys() == {message.idempotency_key}


async def test_sms_429_is_transient(twilio: HttpReceiver, sms_channel: HttpSmsChannel) -> None:
    twilio.status = 429
    with pytest.raises(DeliveryFailed) as caught:
        await sms_channel.send(sms())
    assert caught.value.status == 429
    assert not isinstance(caught.value, PermanentError)


async def test_sms_400_is_permanent_and_names_no_number(
    twilio: HttpReceiver, sms_channel: HttpSmsChannel
) -> None:
    twilio.status = 400
    message = sms()
    with pytest.raises(DeliveryRejected) as caught:
        await sms_channel.send(message)
    assert safe_reason(caught.value) == "DeliveryRejected: sms provider answered 400"
    assert_no_phi(caught.value, PATIENT_PHONE, message.body, TOKEN)


async def test_sms_connection_refused_is_transient() -> None:
    channel = HttpSmsChannel(f"http://127.0.0.1:{closed_port()}", SID, TOKEN, FROM)
    with pytest.raises(DeliveryFailed):
        await channel.send(sms())
    await channel.aclose()


async def test_a_sent_sms_is_found_in_the_providers_message_list_and_an_unsent_one_is_not(
    twilio: HttpReceiver, sms_channel: HttpSmsChannel
) -> None:
    sent, unsent = sms(), sms()
    receipt = await sms_channel.send(sent)
    since = datetime.now(UTC)

    found = await sms_channel.find_sent(sent, since)
    assert found is not None and found.provider_id == receipt.provider_id
    assert await sms_channel.find_sent(unsent, since) is None
    assert twilio.list_requests == 2

    twilio.list_status = 503  # a list that cannot be read is "unknown", never "absent"
    with pytest.raises(DeliveryFailed):
        await sms_channel.find_sent(unsent, since)
