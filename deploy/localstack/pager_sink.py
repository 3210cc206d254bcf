"""Development stand-ins for the notification providers, for the local stack only.

- a PagerDuty-Events-v2-shaped webhook: ``POST /pages`` (``GET /pages`` lists them);
- a Twilio-compatible SMS API: ``POST /sms/2010-04-01/Accounts/{sid}/Messages.json``
  (``GET /sms`` lists them);
- an SMTP server on ``--smtp-port`` (``GET /mail`` lists what arrived).

It prints one line per message: channel, recipient and dedup key; bodies stay in memory for the
GET listings (the local stack carries made-up patients only).

``--record-dir DIR`` (``make run-cluster``) also appends every request, duplicates included, to
``DIR/<channel>.jsonl`` (channel ``webhook``, ``sms`` or ``mail``): one JSON object per line, the
parsed body plus ``received_at``, written and fsync'd before the request is answered, so a checker
can count after the fact what a provider would have received (and a provider that answered has
it on disk, even if the sink is killed right after).

``--spans-file FILE`` also takes Zipkin's span API (``POST /api/v2/spans``) and appends each batch
the services export, as one line, to FILE: the proving grounds scan those spans for synthetic PHI
the way they scan the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

received: dict[str, list[dict[str, Any]]] = {"pages": [], "sms": [], "mail": []}
record_dir: Path | None = None  # --record-dir
spans_file: Path | None = None  # --spans-file


def _record(channel: str, entry: dict[str, Any]) -> None:
    """Append one request to ``<record_dir>/<channel>.jsonl`` and fsync it (no-op without dir)."""
    if record_dir is None:
        return
    line = json.dumps({**entry, "received_at": datetime.now(UTC).isoformat()}) + "\n"
    # One write of a whole line under O_APPEND, then fsync: lines never interleave or tear.
    fd = os.open(record_dir / f"{channel}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _note(channel: str, to: str | None, key: str | None) -> None:
    print(json.dumps({"channel": channel, "to": to, "dedup_key": key}), flush=True)


async def pages(request: Request) -> JSONResponse:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:  # counted all the same: the provider would have received it
        body = {"unparsed": raw.decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"unparsed": body}
    _record("webhook", body)
    received["pages"].append(body)
    _note("webhook", body.get("routing_key"), body.get("dedup_key"))
    return JSONResponse({"status": "success", "dedup_key": body.get("dedup_key")}, status_code=202)


async def sms(request: Request) -> JSONResponse:
    form = dict(parse_qsl((await request.body()).decode()))
    token = request.headers.get("i-twilio-idempotency-token")
    _record("sms", {**form, "idempotency_token": token})
    received["sms"].append(form)
    _note("sms", form.get("To"), request.headers.get("i-twilio-idempotency-token"))
    sid = f"SM{uuid.uuid4().hex}"
    sms_sent.append({"sid": sid, "to": form.get("To"), "from": form.get("From"),
                     "body": form.get("Body"), "status": "sent"})  # fmt: skip
    return JSONResponse({"sid": sid, "status": "queued"}, status_code=201)


# What Twilio's Messages list answers (newest first, by recipient): the notifications service
# searches it for a delivery left in doubt by a crash before it sends again.
sms_sent: list[dict[str, Any]] = []


async def sms_list(request: Request) -> JSONResponse:
    to = request.query_params.get("To")
    size = int(request.query_params.get("PageSize", "50"))
    found = [m for m in reversed(sms_sent) if to is None or m["to"] == to]
    return JSONResponse({"messages": found[:size], "next_page_uri": None})


async def spans(request: Request) -> JSONResponse:
    """Zipkin's ``POST /api/v2/spans``: the batch, as it came, one line in ``--spans-file``."""
    raw = await request.body()
    if spans_file is not None:
        line = raw.decode("utf-8", "replace").replace("\n", " ") + "\n"
        with spans_file.open("a", encoding="utf-8") as f:
            f.write(line)
    return JSONResponse({}, status_code=202)


def listing(kind: str) -> Route:
    async def endpoint(_: Request) -> JSONResponse:
        return JSONResponse(received[kind])

    return Route(f"/{kind}", endpoint, methods=["GET"])


class MailSink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = message_from_bytes(raw)
        entry = {
            "to": envelope.rcpt_tos,
            "subject": msg["Subject"],
            "message_id": msg["Message-ID"],
        }
        text = msg.get_payload(decode=True) if not msg.is_multipart() else None
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else None
        _record("mail", {**entry, "text": decoded})
        received["mail"].append(entry)
        _note("email", ",".join(envelope.rcpt_tos), (msg["Message-ID"] or "").strip())
        return "250 Message accepted for delivery"


app = Starlette(
    routes=[
        Route("/pages", pages, methods=["POST"]),
        Route("/sms/{path:path}", sms, methods=["POST"]),
        Route("/sms/{path:path}", sms_list, methods=["GET"]),
        Route("/api/v2/spans", spans, methods=["POST"]),
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
    parser.add_argument("--record-dir", type=Path, default=None)
    parser.add_argument("--spans-file", type=Path, default=None)
    args = parser.parse_args()
    if args.spans_file is not None:
        global spans_file
        args.spans_file.parent.mkdir(parents=True, exist_ok=True)
        spans_file = args.spans_file
    if args.record_dir is not None:
        global record_dir
        args.record_dir.mkdir(parents=True, exist_ok=True)
        record_dir = args.record_dir
    asyncio.run(serve(args.port, args.smtp_port))


if __name__ == "__main__":
    main()
