"""Real servers standing in for delivery providers: they listen on 127.0.0.1 ports and speak
SMTP or HTTP, so the channels are tested over real sockets (not mocks).

``SmtpReceiver`` runs an aiosmtpd ``SMTP`` protocol on the *running* loop (``create_server`` on
port 0) rather than aiosmtpd's ``Controller``: the Controller runs its own loop in a thread,
needs a port chosen in advance and blocks the caller while it starts.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

IDEMPOTENCY_HEADERS = ("idempotency-key", "i-twilio-idempotency-token")


def closed_port() -> int:
    """A port nothing listens on (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    authenticated: bool
    replied: bool = True  # False while the 250 is held (delay_s): the server has the message


class SmtpReceiver:
    """An SMTP server on a free port. ``refuse``: recipients answered 550 at RCPT;
    ``fail_first``: the first N messages answered 451 at end of DATA; ``credentials``: offer
    AUTH PLAIN/LOGIN (over plain TCP: test only) and accept only this (user, password);
    ``delay_s``: hold the 250 after DATA that long, with the message already recorded (queued),
    as a real MTA does when the reply is lost: the sender cannot tell it was delivered."""

    def __init__(
        self,
        *,
        refuse: Iterable[str] = (),
        fail_first: int = 0,
        credentials: tuple[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.refuse = set(refuse)
        self.fail_first = fail_first
        self.credentials = credentials
        self.delay_s = delay_s
        self.messages: list[ReceivedMail] = []
        self.attempts = 0  # DATA commands seen, accepted or not
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None

    # aiosmtpd handler hooks (looked up by name on the handler object)
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)  # a handle_RCPT hook must record it itself
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return "451 4.3.0 Try again later"
        # The wire has CRLF line ends; Python's parser keeps them inside an 8bit body.
        raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        mail = ReceivedMail(
            message=parsed,
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            authenticated=bool(session.authenticated),
            replied=not self.delay_s,
        )
        self.messages.append(mail)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a bounded hold; the sender may die meanwhile
            mail.replied = True
        return f"250 OK queued as {uuid.uuid4().hex[:12]}"

    def message_ids(self) -> list[str]:
        """One Message-ID per message received (a duplicate appears twice)."""
        return [str(m.message["Message-ID"]) for m in self.messages]

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.credentials is not None
            and (data.login.decode(), data.password.decode()) == self.credentials
        )
        # handled=False: with aiosmtpd's default (True) a failed login gets *no* reply at all
        # (the hook is assumed to have answered) and the client hangs until its timeout.
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {"authenticator": self._authenticate, "auth_require_tls": False}
        with warnings.catch_warnings():  # "AUTH without TLS" is the point of a local test server
            warnings.simplefilter("ignore")
            # hostname given: the default is socket.getfqdn(), a DNS lookup per connection.
            return SMTP(self, hostname="localhost", loop=asyncio.get_running_loop(), **auth)

    async def __aenter__(self) -> SmtpReceiver:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # what we answered; None while the response is held (delay_s)
    sid: str | None = None  # an SMS's sid, given on arrival (the provider has it from then)

    @property
    def idempotency_key(self) -> str | None:
        if isinstance(self.json, dict) and isinstance(self.json.get("dedup_key"), str):
            return str(self.json["dedup_key"])
        return next((self.headers[h] for h in IDEMPOTENCY_HEADERS if h in self.headers), None)


class HttpReceiver:
    """An HTTP server on a free port accepting POST on any path.

    Paths ending ``/Messages.json`` answer like Twilio (201 ``{"sid", "status": "queued"}``;
    the same idempotency token gets the same sid back, but every POST is a message sent: Twilio's
    Messages API does not deduplicate); a GET there lists the messages received (Twilio's
    Messages list: ``To`` filter, newest first, ``PageSize``), anything else like PagerDuty
    Events v2 (202 ``{"status": "success", "dedup_key"}``). ``fail_first``: the first N
    requests get 503; ``status``: force this status on every request; ``delay_s``: hold each
    response that long (the request is recorded on arrival). All three can be changed while
    running.
    """

    def __init__(
        self, *, fail_first: int = 0, status: int | None = None, delay_s: float = 0.0
    ) -> None:
        self.fail_first = fail_first
        self.status = status
        self.delay_s = delay_s
        self.requests: list[ReceivedRequest] = []
        self.list_requests = 0  # GETs of the Messages list
        self.list_status: int | None = None  # force this status on the Messages list
        self._sids: dict[str, str] = {}
        self._closing = asyncio.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    @property
    def accepted(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    def dedup_keys(self, *, accepted_only: bool = False) -> set[str]:
        """Distinct PagerDuty dedup_keys / idempotency headers seen."""
        requests = self.accepted if accepted_only else self.requests
        return {k for r in requests if (k := r.idempotency_key) is not None}

    async def _handle(self, request: Request) -> JSONResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = ReceivedRequest(request.method, request.url.path, headers)
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json"):
            record.json = await request.json()
        elif content_type.startswith("application/x-www-form-urlencoded"):
            # parsed by hand: starlette's request.form() needs python-multipart, not installed
            record.form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if record.path.endswith("/Messages.json"):
            key = record.idempotency_key or uuid.uuid4().hex
            record.sid = self._sids.setdefault(key, f"SM{uuid.uuid4().hex}")
        self.requests.append(record)
        if self.delay_s:
            try:  # cut short on shutdown, so a held request does not hold up __aexit__
                await asyncio.wait_for(self._closing.wait(), self.delay_s)
            except TimeoutError:
                pass
        status, body = self._answer(record, len(self.requests))
        record.status = status
        return JSONResponse(body, status_code=status)

    def _answer(self, record: ReceivedRequest, attempt: int) -> tuple[int, dict[str, Any]]:
        if self.status is not None and not 200 <= self.status < 300:
            return self.status, {"status": self.status, "message": "forced by test"}
        if attempt <= self.fail_first:
            return 503, {"status": 503, "message": "unavailable"}
        if record.sid is not None:
            return self.status or 201, {"sid": record.sid, "status": "queued"}
        dedup = record.idempotency_key or uuid.uuid4().hex
        return self.status or 202, {"status": "success", "dedup_key": dedup}

    def sms_sent(self) -> list[ReceivedRequest]:
        """Every SMS the provider took (on arrival: it sends even if our side never hears back)."""
        return [r for r in self.requests if r.sid is not None]

    async def _list_messages(self, request: Request) -> JSONResponse:
        self.list_requests += 1
        if self.list_status is not None:
            return JSONResponse({"status": self.list_status}, status_code=self.list_status)
        to = request.query_params.get("To")
        size = int(request.query_params.get("PageSize", "50"))
        found = [r for r in reversed(self.sms_sent()) if to is None or r.form.get("To") == to]
        messages = [
            {
                "sid": r.sid,
                "to": r.form.get("To"),
                "from": r.form.get("From"),
                "body": r.form.get("Body"),
                "status": "sent",
            }
            for r in found[:size]
        ]
        return JSONResponse({"messages": messages, "next_page_uri": None})

    async def _route(self, request: Request) -> JSONResponse:
        if request.method == "GET" and request.url.path.endswith("/Messages.json"):
            return await self._list_messages(request)
        return await self._handle(request)

    async def __aenter__(self) -> HttpReceiver:
        app = Starlette(routes=[Route("/{path:path}", self._route, methods=["POST", "GET"])])
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        # Serve on the socket bound in __init__: no window for another process to take the port.
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surface the startup error, if it raised one
                raise RuntimeError("uvicorn exited during startup")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._closing.set()
        self._server.should_exit = True
        await self._task
        self._sock.close()
