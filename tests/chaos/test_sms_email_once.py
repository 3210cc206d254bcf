"""Kill notifications (SIGKILL) again and again while SMS and e-mail pages are in flight — the
provider has the message, our "sent" is not committed — and count every SMS and every e-mail the
recording sinks received: nothing lost, every SMS exactly once, every e-mail at most the bound the
channel allows (plain SMTP cannot tell us whether a message whose reply we never read arrived).

Real Kafka, real PostgreSQL, the service as its own process (as ``make run`` starts it), a real
SMTP server and a Twilio-like HTTP SMS provider that keep (queue) every message on arrival and
hold their reply, so each kill lands between "provider accepted" and "we recorded it".

Knobs: ``TAPER_CHAOS_ROUNDS`` (default 3), ``TAPER_CHAOS_PAGES`` per round (default 6);
``TAPER_CHAOS_REPORT=<file>`` appends the figures as a Markdown table row.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import THRESHOLD_EXCEEDED
from tests.chaos.evidence import count, dead_letters, migrated
from tests.chaos.service_process import ServiceProcess
from tests.helpers import eventually, produce_raw, red_flag_threshold
from tests.notifications_receivers import HttpReceiver, SmtpReceiver

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(2400)]

ROUNDS = int(os.environ.get("TAPER_CHAOS_ROUNDS", "3"))
PAGES = int(os.environ.get("TAPER_CHAOS_PAGES", "6"))
HOLD_S = 4.0  # the sinks hold their reply this long: below the channel timeouts (5 s)
CLINICIAN = "dr-chaos"
PHONE = "+15550101234"
EMAIL = "oncall@example.org"
SENT = (
    "SELECT count(*) FROM deliveries d JOIN pages p ON p.id = d.owner_id"
    " WHERE d.status = 'sent' AND p.episode_id IN :e"
)
IN_DOUBT = "delivery in doubt"
RETRIED = "delivery will be retried"  # services/notifications/service_layer/delivery.py's log line
# RED pages the test clinician, on SMS and e-mail, and nobody else for an hour.
POLICY = {
    "levels": [{"targets": [{"kind": "clinician", "ref": CLINICIAN}], "ack_timeout_minutes": 60}],
    "loops": 0,
    "repage_unresolved_after_minutes": None,
    "business_hours": None,
}


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[SmtpReceiver, HttpReceiver]]:
    async with SmtpReceiver(delay_s=HOLD_S) as smtp, HttpReceiver(delay_s=HOLD_S) as sms:
        yield smtp, sms


@pytest.fixture
def notifications_process(
    kafka_bootstrap_servers: str,
    fresh_pg_dsn: str,
    sinks: tuple[SmtpReceiver, HttpReceiver],
    tmp_path: Path,
) -> Iterator[ServiceProcess]:
    smtp, sms = sinks
    process = ServiceProcess(
        "notifications",
        kafka_bootstrap_servers,
        fresh_pg_dsn,
        tmp_path / "notif.log",
        SMTP_HOST=smtp.host,
        SMTP_PORT=str(smtp.port),
        SMTP_TIMEOUT_S="5",
        SMS_BASE_URL=sms.url("/sms"),
        SMS_TIMEOUT_S="5",
        PAGE_WEBHOOK_URL=sms.url("/pages"),  # only the fallback would use it: must stay unused
        DELIVERY_LEASE_S="6",
    )
    yield process
    process.stop()


async def configure(dsn: str) -> None:
    """The clinician's contact methods and the RED policy, as the admin API would store them."""
    engine = create_async_engine(dsn)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO clinician_contacts (subject, methods, updated_by, updated_at)"
                    " VALUES (:s, CAST(:m AS JSON), 'test', :t)"
                ),
                {
                    "s": CLINICIAN,
                    "m": json.dumps(
                        [
                            {"channel": "sms", "address": PHONE},
                            {"channel": "email", "address": EMAIL},
                        ]
                    ),
                    "t": now,
                },
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO escalation_policies"
                    " (id, key, version, definition, created_by, created_at)"
                    " VALUES (:i, 'red-default', 1, CAST(:d AS JSON), 'test', :t)"
                ),
                {"i": uuid.uuid4(), "d": json.dumps(POLICY), "t": now},
            )
    finally:
        await engine.dispose()


async def delivery_keys(dsn: str, episodes: list[uuid.UUID]) -> dict[str, str]:
    """idempotency key -> channel, for the run's page deliveries."""
    engine = create_async_engine(dsn)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT d.idempotency_key, d.channel FROM deliveries d"
                    " JOIN pages p ON p.id = d.owner_id AND d.owner_kind = 'page'"
                    " WHERE p.episode_id IN :e"
                ).bindparams(sa.bindparam("e", expanding=True)),
                {"e": episodes},
            )
            return {k: c for k, c in rows.all()}
    finally:
        await engine.dispose()


def in_doubt_outcomes(log: Path) -> Counter[tuple[str, str]]:
    """(channel, outcome) of every in-doubt recovery the service logged, over all its runs."""
    seen: Counter[tuple[str, str]] = Counter()
    if not log.exists():
        return seen
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == IN_DOUBT:
            seen[(str(record.get("channel")), str(record.get("outcome")))] += 1
    return seen


def retried(log: Path, channel: str) -> int:
    """Blind retries of ``channel`` after a failed call (the call may have reached the server)."""
    if not log.exists():
        return 0
    n = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == RETRIED:
            n += record.get("channel") == channel
    return n


def write_report(figures: dict[str, Any]) -> None:
    target = os.environ.get("TAPER_CHAOS_REPORT")
    if not target:
        return
    path = Path(target)
    columns = list(figures)
    new = not path.exists()
    with path.open("a") as out:
        if new:
            out.write("| " + " | ".join(columns) + " |\n")
            out.write("|" + "---|" * len(columns) + "\n")
        out.write("| " + " | ".join(str(figures[c]) for c in columns) + " |\n")


async def test_sms_once_and_email_within_bound_across_kills_mid_delivery(
    notifications_process: ServiceProcess,
    sinks: tuple[SmtpReceiver, HttpReceiver],
    fresh_pg_dsn: str,
    kafka_bootstrap_servers: str,
) -> None:
    smtp, sms = sinks
    notifications_process.start()
    await eventually(lambda: migrated(fresh_pg_dsn, "deliveries"), timeout=180)
    await configure(fresh_pg_dsn)
    episodes: list[uuid.UUID] = []
    keys: list[bytes] = []
    held = {"sms": 0, "email": 0}  # messages the sinks had, reply unread, at each kill
    for _ in range(ROUNDS):
        events = [red_flag_threshold(uuid.uuid4()) for _ in range(PAGES)]
        mine = [e.episode_id for e in events]
        episodes += mine
        keys += [str(e.patient_id).encode() for e in events]
        sms_before, mail_before = len(sms.sms_sent()), len(smtp.messages)
        await produce_raw(
            kafka_bootstrap_servers,
            THRESHOLD_EXCEEDED.name,
            [(str(e.patient_id).encode(), e.to_bytes(), []) for e in events],
        )

        # The timers may send one at a time: odd rounds kill with an SMS held, even ones with an
        # e-mail held, so both channels are hit mid-call.
        target = "sms" if len(episodes) // PAGES % 2 else "email"

        async def in_flight(
            sms_before: int = sms_before, mail_before: int = mail_before, target: str = target
        ) -> bool:
            if target == "sms":
                return any(r.status is None for r in sms.sms_sent()[sms_before:])
            return any(not m.replied for m in smtp.messages[mail_before:])

        try:
            await eventually(in_flight, timeout=120, interval=0.02)
        except AssertionError as exc:
            sms_new, mail_new = sms.requests[sms_before:], smtp.messages[mail_before:]
            raise AssertionError(
                f"{exc}: SMS {[(r.path, r.status) for r in sms_new]},"
                f" e-mail {[m.replied for m in mail_new]}"
            ) from None
        notifications_process.crash()  # the sinks have these; our side never heard back
        held["sms"] += sum(1 for r in sms.sms_sent()[sms_before:] if r.status is None)
        held["email"] += sum(1 for m in smtp.messages[mail_before:] if not m.replied)
        notifications_process.start()

        async def round_delivered(mine: list[uuid.UUID] = mine) -> bool:
            return await count(fresh_pg_dsn, SENT, e=mine) >= 2 * PAGES

        await eventually(round_delivered, timeout=180)
    notifications_process.stop()

    expected = await delivery_keys(fresh_pg_dsn, episodes)
    sms_copies = Counter(r.idempotency_key for r in sms.sms_sent())
    mail_copies = Counter(m.removeprefix("<").split("@", 1)[0] for m in smtp.message_ids())
    figures: dict[str, Any] = {"rounds": ROUNDS, "pages": len(episodes)}
    for channel, copies in (("sms", sms_copies), ("email", mail_copies)):
        wanted = [k for k, c in expected.items() if c == channel]
        figures[f"{channel} deliveries"] = len(wanted)
        figures[f"{channel} held at kills"] = held[channel]
        figures[f"{channel} received"] = sum(copies[k] for k in wanted)
        figures[f"{channel} lost"] = sum(1 for k in wanted if copies[k] == 0)
        figures[f"{channel} duplicates"] = sum(max(copies[k] - 1, 0) for k in wanted)
        figures[f"{channel} max copies"] = max((copies[k] for k in wanted), default=0)
    doubts = in_doubt_outcomes(notifications_process.log)
    figures["in-doubt recoveries"] = dict(sorted((f"{c}:{o}", n) for (c, o), n in doubts.items()))
    email_retries = retried(notifications_process.log, "email")
    figures["email blind retries"] = email_retries
    write_report(figures)

    assert len(expected) == 2 * len(episodes)  # one SMS and one e-mail delivery per page
    assert len(episodes) == len({e for e in episodes})
    # Each kill really landed mid-delivery on both channels (else this proves nothing) ...
    assert held["sms"] >= (ROUNDS + 1) // 2 and held["email"] >= ROUNDS // 2
    # ... and the service really recovered those in doubt: SMS by looking it up at the provider,
    # e-mail by resending with the same Message-ID.
    assert doubts[("sms", "found")] >= 1, doubts
    if ROUNDS > 1:
        assert doubts[("email", "resent")] >= 1, doubts
    assert figures["sms lost"] == 0 and figures["email lost"] == 0, figures
    assert figures["sms duplicates"] == 0, figures  # the provider's list makes SMS exactly once
    # Plain SMTP: an e-mail comes twice only when it was resent (in doubt after a kill, or a
    # retry after a call that failed once the server may have had it), never otherwise.
    assert figures["email max copies"] <= 2, figures
    assert figures["email duplicates"] <= doubts[("email", "resent")] + email_retries, figures
    # Nothing else was sent (no fallback page: every page reached the clinician) ...
    assert [r for r in sms.requests if r.sid is None] == []
    # ... and nothing was dead-lettered.
    assert await dead_letters(kafka_bootstrap_servers, THRESHOLD_EXCEEDED.dlq, keys) == []
