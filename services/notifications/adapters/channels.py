"""Delivery channels (webhook page, email, SMS): adapters behind the one ``Channel`` port.

Every channel sends an ``OutboundMessage`` and either returns a ``Receipt`` or raises
``DeliveryFailed`` (transient: retry with backoff) or ``DeliveryRejected`` (permanent: the
provider refused this message, retrying cannot help). Error messages carry status codes and
exception class names only: provider error texts echo addresses, numbers and bodies (PHI).

Each message carries an ``idempotency_key`` that is the same on every retry, and every channel
hands it to the provider, so a resend after a crash between "provider accepted" and "we recorded
it" collapses to one page / email / SMS wherever the provider deduplicates. Not every provider
does: PagerDuty collapses on ``dedup_key``, but Twilio's Messages API and plain SMTP do not. So
an SMS carries a short ``Ref`` (a hash of the delivery id, no PHI) and the SMS channel can look a
message up in the provider's message list (``Verifiable``) before anything is resent; an email
can only be resent with the same ``Message-ID`` (docs/delivery-guarantees.md).

The body builders are pure functions so that what goes on the wire is unit-testable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from typing import Any, Protocol

import aiosmtplib
import httpx
from opentelemetry.trace import NoOpTracerProvider, SpanKind, Status, StatusCode, TracerProvider

from services.chassis.errors import PermanentError, SafeError
from services.chassis.telemetry import current_trace_headers


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: uuid.UUID
    channel: ChannelKind
    address: str  # webhook: PagerDuty routing key; email: an address; sms: an E.164 number
    idempotency_key: str  # the same on every retry of this delivery
    subject: str  # short, no PHI
    body: str  # plain text
    severity: str | None = None  # "RED" / "AMBER" for pages, None for patient messages
    details: Mapping[str, Any] = field(default_factory=dict)  # opaque ids only
    links: tuple[tuple[str, str], ...] = ()  # (href, text)


@dataclass(frozen=True)
class Receipt:
    provider_id: str | None  # PagerDuty dedup_key, SMTP Message-ID, SMS sid


class DeliveryError(SafeError):
    """Base of both outcomes, so a caller can catch "the channel said no" in one clause."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status  # HTTP or SMTP code, when the provider answered one


class DeliveryFailed(DeliveryError):
    """Transient: retry later with backoff. ``maybe_sent``: the request may have reached the
    provider (a timeout or a connection lost after sending), so a retry could duplicate it."""

    def __init__(self, reason: str, *, status: int | None = None, maybe_sent: bool = False) -> None:
        super().__init__(reason, status=status)
        self.maybe_sent = maybe_sent


class DeliveryRejected(DeliveryError, PermanentError):
    """Permanent: the provider refused the message (4xx other than 408/429, invalid address)."""


class Channel(Protocol):
    kind: ChannelKind

    async def send(self, message: OutboundMessage) -> Receipt: ...

    async def aclose(self) -> None: ...


class Verifiable(Protocol):
    """A channel whose provider lists what it sent: a delivery in doubt is looked up there."""

    async def find_sent(self, message: OutboundMessage, since: datetime) -> Receipt | None:
        """The provider's record of ``message`` sent since ``since``, or None when it has none.
        Raises ``DeliveryFailed`` when the list cannot be read (then nothing is known)."""


def can_verify(channel: Channel) -> bool:
    return callable(getattr(channel, "find_sent", None)) and getattr(channel, "verifiable", True)


# --- pure body builders -------------------------------------------------------------------------

SEVERITY_TO_PD = {"RED": "critical", "AMBER": "warning"}
# A msg-id's left part must be dot-atom text; anything else would make a malformed header.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+")


def pagerduty_trigger(message: OutboundMessage) -> dict[str, Any]:
    """The PagerDuty Events API v2 ``trigger`` body; ``dedup_key`` makes resends one incident."""
    return {
        "routing_key": message.address,
        "event_action": "trigger",
        "dedup_key": message.idempotency_key,
        "payload": {
            "summary": message.subject,
            "severity": SEVERITY_TO_PD.get(message.severity or "", "info"),
            "source": "taper-notifications",
            "component": "escalation",
            "custom_details": {**message.details, "message": message.body},
        },
        "links": [{"href": href, "text": text} for href, text in message.links],
    }


def text_with_links(message: OutboundMessage) -> str:
    """Plain text has nowhere else to put links: append one ``text: href`` line each."""
    if not message.links:
        return message.body
    lines = [f"{text}: {href}" for href, text in message.links]
    return message.body.rstrip("\n") + "\n\n" + "\n".join(lines)


def message_id_for(idempotency_key: str) -> str:
    """Deterministic, so a resend after a crash is recognisably the same email."""
    if not _DOT_ATOM.fullmatch(idempotency_key):
        raise ValueError("idempotency key is not valid in a Message-ID")
    return f"<{idempotency_key}@taper.invalid>"


def email_message(message: OutboundMessage, sender: str, now: datetime) -> EmailMessage:
    """Raises ValueError for values that cannot form a header (a newline in an address)."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.address
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now)
    email["Message-ID"] = message_id_for(message.idempotency_key)
    email.set_content(text_with_links(message))
    return email


def delivery_ref(delivery_id: uuid.UUID) -> str:
    """8 characters naming one delivery in an SMS body, findable in the provider's list; a hash,
    so it says nothing about the patient or the page (40 bits: no clash among one number's
    recent messages in practice)."""
    digest = hashlib.sha256(delivery_id.bytes).digest()
    return base64.b32encode(digest[:5]).decode()


def sms_body(message: OutboundMessage) -> str:
    return f"{text_with_links(message)}\nRef {delivery_ref(message.delivery_id)}"


def sms_form(message: OutboundMessage, from_number: str) -> dict[str, str]:
    return {"To": message.address, "From": from_number, "Body": sms_body(message)}


def sent_sms_in(listing: Any, message: OutboundMessage) -> Receipt | None:
    """The message in one page of a Twilio Messages list (``{"messages": [...]}``) whose body
    carries this delivery's ``Ref`` line, sent to this number; None when none does."""
    wanted = f"Ref {delivery_ref(message.delivery_id)}"
    items = listing.get("messages") if isinstance(listing, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("to") != message.address:
            continue
        body = item.get("body")
        if isinstance(body, str) and wanted in body.splitlines():
            if item.get("status") in ("failed", "undelivered", "canceled"):
                continue  # the provider took it but it went nowhere: not sent
            sid = item.get("sid")
            return Receipt(sid if isinstance(sid, str) else None)
    return None


def http_outcome(provider: str, status: int) -> DeliveryError | None:
    """None for 2xx; otherwise the error to raise. 408/429/5xx (and 3xx: a misconfigured URL,
    not this message's fault) are retried; other 4xx mean this message will never be accepted."""
    if 200 <= status < 300:
        return None
    if 400 <= status < 500 and status not in (408, 429):
        return DeliveryRejected(f"{provider} answered {status}", status=status)
    return DeliveryFailed(f"{provider} answered {status}", status=status)


def _json_field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return None
    return value if isinstance(value, str) else None


# --- adapters -----------------------------------------------------------------------------------


class WebhookChannel:
    """Pages: POSTs a PagerDuty-Events-v2 ``trigger`` to a configured URL."""

    kind: ChannelKind = ChannelKind.WEBHOOK

    def __init__(
        self, url: str, timeout_s: float = 5.0, tracer_provider: TracerProvider | None = None
    ) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._tracer = (tracer_provider or NoOpTracerProvider()).get_tracer("taper.webhook")

    async def send(self, message: OutboundMessage) -> Receipt:
        # default=str: details may hold UUIDs, which the json module does not know.
        content = json.dumps(pagerduty_trigger(message), default=str)
        # The call as its own client span (no URL: it may embed a token; no address, no body).
        with self._tracer.start_as_current_span(
            "POST webhook",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "taper.channel": self.kind.value},
        ) as span:
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": message.idempotency_key,
                **current_trace_headers(),
            }
            try:
                response = await self._client.post(self._url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                # from None: the chained httpx message names the URL, which may embed a token.
                raise DeliveryFailed(f"webhook unreachable: {type(exc).__name__}") from None
            span.set_attribute("http.response.status_code", response.status_code)
            if error := http_outcome("webhook", response.status_code):
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise error
        return Receipt(_json_field(response, "dedup_key") or message.idempotency_key)

    async def aclose(self) -> None:
        await self._client.aclose()


class SmtpEmailChannel:
    """Email over SMTP; one connection per message (volumes are low, and nothing to go stale)."""

    kind: ChannelKind = ChannelKind.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout_s: float = 10,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password = username, password
        self._use_tls, self._start_tls, self._timeout_s = use_tls, start_tls, timeout_s

    async def send(self, message: OutboundMessage) -> Receipt:
        try:
            email = email_message(message, self._sender, datetime.now(UTC))
        except ValueError:
            raise DeliveryRejected("email could not be built: ValueError") from None
        try:
            await aiosmtplib.send(
                email,
                sender=self._sender,
                recipients=[message.address],
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._use_tls,
                start_tls=self._start_tls,
                timeout=self._timeout_s,
            )
        # aiosmtplib's messages quote the refused address and the server's reply: keep codes only.
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _smtp_error("recipient refused", exc.recipients[0].code) from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            raise _smtp_error("message refused", exc.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            # Sender, HELO or AUTH refused: our configuration, not this message; retry until fixed.
            raise DeliveryFailed(f"smtp answered {exc.code}", status=exc.code) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"smtp unreachable: {type(exc).__name__}") from None
        return Receipt(email["Message-ID"])

    async def aclose(self) -> None:
        return None


def _smtp_error(what: str, code: int) -> DeliveryError:
    cls = DeliveryRejected if 500 <= code < 600 else DeliveryFailed
    return cls(f"smtp {what}: {code}", status=code)


class HttpSmsChannel:
    """SMS through a Twilio-compatible Messages API."""

    kind: ChannelKind = ChannelKind.SMS

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._origin = base_url.rstrip("/")
        self._from = from_number
        self._client = httpx.AsyncClient(
            timeout=timeout_s, auth=httpx.BasicAuth(account_sid, auth_token)
        )

    async def send(self, message: OutboundMessage) -> Receipt:
        headers = {"I-Twilio-Idempotency-Token": message.idempotency_key}
        try:
            response = await self._client.post(
                self._url, data=sms_form(message, self._from), headers=headers
            )
        except httpx.HTTPError as exc:
            # Refused or never connected: certainly not sent. Anything later (a read timeout,
            # the connection dropped) may have left an SMS at the provider: look it up first.
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise DeliveryFailed(
                f"sms provider unreachable: {type(exc).__name__}", maybe_sent=not unsent
            ) from None
        if error := http_outcome("sms provider", response.status_code):
            raise error
        return Receipt(_json_field(response, "sid"))

    async def find_sent(self, message: OutboundMessage, since: datetime) -> Receipt | None:
        """Twilio's Messages list, newest first, to this number, sent since the day before
        ``since`` (the filter is by date); follows ``next_page_uri`` for a few pages."""
        params: dict[str, str] | None = {
            "To": message.address,
            "DateSent>": (since - timedelta(days=1)).date().isoformat(),
            "PageSize": "100",
        }
        url = self._url
        for _ in range(LIST_PAGES):
            try:
                response = await self._client.get(url, params=params)
            except httpx.HTTPError as exc:
                raise DeliveryFailed(f"sms list unreachable: {type(exc).__name__}") from None
            if not 200 <= response.status_code < 300:
                raise DeliveryFailed(
                    f"sms list answered {response.status_code}", status=response.status_code
                )
            try:
                listing = response.json()
            except ValueError:
                raise DeliveryFailed("sms list is not JSON") from None
            if (found := sent_sms_in(listing, message)) is not None:
                return found
            next_page = listing.get("next_page_uri") if isinstance(listing, dict) else None
            if not isinstance(next_page, str) or not next_page:
                return None
            url, params = self._origin + next_page, None
        raise DeliveryFailed("sms list too long to search")  # unknown, not "absent"

    async def aclose(self) -> None:
        await self._client.aclose()


LIST_PAGES = 5  # 500 messages to one number in two days: more means "cannot tell", not "absent"


class RecordingChannel:
    """A fake for unit tests: remembers what it accepted; can fail or reject on demand."""

    def __init__(self, kind: ChannelKind) -> None:
        self.kind = kind
        self.sent: list[OutboundMessage] = []
        self.attempts = 0
        self.fail_next = 0  # the next N sends raise DeliveryFailed
        self.reject_next = 0  # then the next N raise DeliveryRejected
        self.time_out_next = 0  # then the next N are taken but answer a timeout (maybe_sent)
        self.lose_next = 0  # then the next N answer a timeout and were never taken
        self.closed = False
        self.verifiable = kind is ChannelKind.SMS  # like the real ones: only SMS has a list
        self.lookups = 0  # find_sent calls
        self.list_fails = False

    async def send(self, message: OutboundMessage) -> Receipt:
        self.attempts += 1
        if self.fail_next:
            self.fail_next -= 1
            raise DeliveryFailed("induced failure")
        if self.time_out_next:  # the provider takes it, our call times out
            self.time_out_next -= 1
            self.sent.append(message)
            raise DeliveryFailed("induced timeout", maybe_sent=True)
        if self.lose_next:
            self.lose_next -= 1
            raise DeliveryFailed("induced timeout, lost", maybe_sent=True)
        if self.reject_next:
            self.reject_next -= 1
            raise DeliveryRejected("induced rejection")
        self.sent.append(message)
        return Receipt(message.idempotency_key)

    async def find_sent(self, message: OutboundMessage, since: datetime) -> Receipt | None:
        """Only when ``verifiable`` (an SMS provider with a list); ``list_fails``: unreadable."""
        self.lookups += 1
        if self.list_fails:
            raise DeliveryFailed("induced list failure")
        if any(m.delivery_id == message.delivery_id for m in self.sent):
            return Receipt(message.idempotency_key)
        return None

    async def aclose(self) -> None:
        self.closed = True
