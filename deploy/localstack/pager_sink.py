"""Development stand-ins for the notification providers, for the local stack only.

- a PagerDuty-Events-v2-shaped webhook: ``POST /pages`` (``GET /pages`` lists them);
- a Twilio-compatible SMS API: ``POST /sms/2010-04-01/Accounts/{sid}/Messages.json``
  (``GET /sms`` lists them);
- an SMTP server on ``--smtp-port`` (``GET /mail`` lists what arrived).

It prints one line per message: channel, recipient and dedup key; bodies stay in memory for the
GET listings (the local stack carries made-up patients only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from email import message_from_bytes
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

received: dict[str, list[dict[str, Any]]] = {"pages": [], "sms": [], "mail": []}


def _note(channel: str, to: str | None, key: str | None) -> None:
    print(json.dumps({"channel": channel, "to": to, "dedup_key": key}), flush=True)


async def pages(request: Request) -> JSONResponse:
    body = await request.json()
    received["pages"].append(body)
    _note("webhook", body.get("routing_key"), body.get("dedup_key"))
    return JSONResponse({"status": "success", "dedup_key": body.get("dedup_key")}, status_code=202)


async def sms(request: Request) -> JSONResponse:
    form = dict(parse_qsl((await request.body()).decode()))
    received["sms"].append(form)
    _note("sms", form.get("To"), request.headers.get("i-twilio-idempotency-token"))
    return JSONResponse({"sid": f"SM{uuid.uuid4().hex}", "status": "queued"}, status_code=201)


def listing(kind: str) -> Route:
    async def endpoint(_: Request) -> JSONResponse:
        return JSONResponse(received[kind])

    return Route(f"/{kind}", endpoint, methods=["GET"])


class MailSink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw)
        received["mail"].append(
            {"to": envelope.rcpt_tos, "subject": msg["Subject"], "message_id": msg["Message-ID"]}
        )
        _note("email", ",".join(envelope.rcpt_tos), (msg["Message-ID"] or "").strip())
        return "250 Message accepted for delivery"


app = Starlette(
    routes=[
        Route("/pages", pages, methods=["POST"]),
        Route("/sms/{path:path}", sms, methods=["POST"]),
        listing("pages"),
        listing("sms"),
        listing("mail"),
    ]
)


async def serve(http_port: int, smtp_port: int) -> None:
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(MailSink(), hostname="localhost"), "127.0.0.1", smtp_port
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning")
    try:
        await uvicorn.Server(config).serve()
    finally:
        smtp.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--smtp-port", type=int, default=8025)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.smtp_port))


if __name__ == "__main__":
    main()
