"""taperctl: the on-call engineer's questions, answered from the broker and the databases.

    taperctl topics                              partitions, replicas, min ISR, messages, drift
    taperctl lag [GROUP ...]                     per group, topic and partition (default: all)
    taperctl outbox [SERVICE ...]                rows waiting and the oldest's age, per service
    taperctl timers list SERVICE                 parked timers (id, kind, attempts, error class)
    taperctl timers retry SERVICE TIMER_ID       make a parked timer due now
    taperctl deliveries list [--status S ...]    failed/rejected deliveries (notifications)
    taperctl deliveries retry DELIVERY_ID        send a failed delivery again
    taperctl routing                             escalation policies that cannot page a person
    taperctl dlq list [DLQ_TOPIC ...] [--reason TEXT]
    taperctl dlq replay DLQ_TOPIC (--event-id ID ... | --offsets P:FROM-TO | --reason TEXT | --all)
                                   [--dry-run]   each letter at most once (ops_dlq.py)
    taperctl migrations upgrade SERVICE [--sql]  apply, or print the SQL for a DBA

Kafka: ``--bootstrap`` or ``KAFKA_BOOTSTRAP_SERVERS`` and the services' KAFKA_* security
variables. A database: ``--database-url`` or the service's ``<SERVICE>_DATABASE_URL``.
Output is a table; ``--json`` gives one JSON object a line. Exit codes: 0 done, 1 something to
look at (lag, parked timers, drift ... found), 2 a usage or connection error, in one line.
``TAPER_ENV`` must be set, as for every process of the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.chassis import ops_db, ops_dlq
from services.chassis.kafka import KafkaSecurity
from services.chassis.ops_kafka import SERVICES, Broker, OpsError, consumer_lag, describe_topics
from services.chassis.settings import ServiceSettings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("bootstrap", "database_url"):
        setattr(args, name, getattr(args, name, None))
    args.json = getattr(args, "json", False)
    try:
        settings = ServiceSettings(service_name="taperctl")
    except ValueError as exc:
        print(f"taperctl: {_first_line(exc)}", file=sys.stderr)
        return 2
    try:
        return _run(args, settings)
    except OpsError as exc:
        print(f"taperctl: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, settings: ServiceSettings) -> int:
    broker = Broker(
        args.bootstrap or settings.kafka_bootstrap_servers, KafkaSecurity.from_settings(settings)
    )
    out = Output(as_json=args.json)
    match args.command, getattr(args, "action", None):
        case "topics", _:
            rows = describe_topics(
                broker,
                replication_factor=settings.kafka_replication_factor,
                min_insync_replicas=settings.kafka_min_insync_replicas_effective,
            )
            out.rows(rows)
            return int(any(r["drift"] != "ok" for r in rows))
        case "lag", _:
            rows = consumer_lag(broker, args.groups or list(SERVICES))
            out.rows(rows)
            return int(any(r["lag"] > 0 for r in rows))
        case "outbox", _:
            now = datetime.now(UTC)
            rows = [
                {
                    "service": s,
                    **asyncio.run(
                        ops_db.outbox_backlog(ops_db.database_url(s, args.database_url), now)
                    ),
                }
                for s in args.services or SERVICES
            ]
            out.rows(rows)
            return int(any(r["pending"] for r in rows))
        case "timers", "list":
            rows = asyncio.run(ops_db.list_parked(_url(args)))
            out.rows(rows)
            return int(bool(rows))
        case "timers", "retry":
            asyncio.run(ops_db.retry_timer(_url(args), _uuid(args.timer_id, "timer id")))
            out.line(f"timer {args.timer_id} is due now")
        case "deliveries", action:
            return _deliveries(str(action), args, out)
        case "routing", _:
            return _routing(args, out)
        case "dlq", "list":
            topics = args.topics or ops_dlq.dlq_topics()
            rows = ops_dlq.list_letters(broker, topics, reason=args.reason)
            out.rows(rows)
            return int(any(r["replayed_at"] is None for r in rows))
        case "dlq", "replay":
            return _replay(broker, settings, args, out)
        case "migrations", "upgrade":
            url = _url(args)
            if args.sql:
                note = asyncio.run(ops_db.migrate(args.service, url, sql_to=sys.stdout))
                print(f"-- {note}", file=sys.stderr)
            else:
                out.line(asyncio.run(ops_db.migrate(args.service, url)))
    return 0


def _deliveries(action: str, args: argparse.Namespace, out: Output) -> int:
    # Only here: the notifications service's own tables and rules (the chassis knows no service).
    from services.notifications.adapters.orm import metadata
    from services.notifications.service_layer import delivery_ops

    url = ops_db.database_url("notifications", args.database_url)

    async def run() -> Any:
        async with ops_db.engine_for(url) as engine:
            factory = ops_db.chassis_uow(engine)
            factory.tables = metadata
            if action == "list":
                statuses = tuple(args.status or delivery_ops.RETRYABLE)
                return await delivery_ops.list_deliveries(factory, statuses)
            delivery_id = _uuid(args.delivery_id, "delivery id")
            return await delivery_ops.retry_delivery(factory, delivery_id, _operator())

    result = asyncio.run(run())
    if action == "list":
        found, more = result
        out.rows(found)
        if more:
            out.line(f"the oldest {len(found)} shown; more exist: retry these or narrow --status")
        return int(bool(found))
    if not result:
        raise OpsError(f"no failed or rejected delivery {args.delivery_id}")
    out.line(f"delivery {args.delivery_id} is pending again")
    return 0


def _routing(args: argparse.Namespace, out: Output) -> int:
    """Policies in use that cannot page a person (the ``PolicyUnroutable`` alert's question)."""
    from services.notifications.adapters.orm import metadata
    from services.notifications.service_layer import teams

    url = ops_db.database_url("notifications", args.database_url)

    async def run() -> dict[str, Any]:
        async with ops_db.engine_for(url) as engine:
            factory = ops_db.chassis_uow(engine)
            factory.tables = metadata
            async with factory() as uow:
                return await teams.routing_report(uow)

    report = asyncio.run(run())
    rows = [
        {
            "policy": p["key"],
            "version": p["version"],
            "used_by": " ".join(p["used_by"]) or "-",
            "problems": "; ".join(
                f"{'.'.join(map(str, q['loc']))}: {q['type']}" for q in p["problems"]
            )
            or "-",
        }
        for p in report["policies"]
        if p["used_by"] and not p["routable"]
    ]
    out.rows(rows)
    return int(bool(rows))


def _replay(
    broker: Broker, settings: ServiceSettings, args: argparse.Namespace, out: Output
) -> int:
    partition = first = last = None
    if args.offsets:
        partition, first, last = ops_dlq.parse_offsets(args.offsets)
    selection = ops_dlq.Selection(
        event_ids=frozenset(args.event_id or ()),
        partition=partition,
        first_offset=first,
        last_offset=last,
        reason=args.reason,
        everything=args.all,
    )
    result = ops_dlq.replay(
        broker,
        args.topic,
        selection,
        dry_run=args.dry_run,
        replication_factor=settings.kafka_replication_factor,
        min_insync_replicas=settings.kafka_min_insync_replicas_effective,
    )
    verb = "would replay" if args.dry_run else "replayed"
    out.rows([{"action": verb, **r} for r in result.replayed])
    out.rows([{"action": "already replayed, skipped", **r} for r in result.already])
    out.line(f"{verb} {len(result.replayed)}, skipped {len(result.already)} already replayed")
    return 0


class Output:
    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def rows(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.as_json:
            for row in rows:
                print(json.dumps(row, default=str))
            return
        if not rows:
            print("(none)")
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max(len(c), *(len(line[i]) for line in table)) for i, c in enumerate(columns)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for cells in table:
            print("  ".join(v.ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip())

    def line(self, text: str) -> None:
        print(json.dumps({"result": text}) if self.as_json else text)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _url(args: argparse.Namespace) -> str:
    return ops_db.database_url(args.service, args.database_url)


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise OpsError(f"{text!r} is not a {what} (a UUID)") from None


def _operator() -> str:
    return f"ops:{os.environ.get('USER') or 'unknown'}"[:100]


def _first_line(exc: Exception) -> str:
    """pydantic's "1 validation error for ..." / field / "Value error, message [type=...]"
    -> "message"."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in errors())
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit code 2 (argparse prints usage too)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: given before or after the command, a subcommand's default must not erase it.
    hide = argparse.SUPPRESS
    common.add_argument("--bootstrap", default=hide, help="Kafka (default KAFKA_BOOTSTRAP_SERVERS)")
    common.add_argument("--json", action="store_true", default=hide, help="one JSON a line")
    common.add_argument("--database-url", default=hide, help="default <SERVICE>_DATABASE_URL")
    parser = _Parser(
        prog="taperctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("topics", parents=[common], help="topics against contracts/topics.py")
    sub.add_parser("lag", parents=[common], help="consumer lag").add_argument(
        "groups", nargs="*", metavar="GROUP"
    )
    sub.add_parser("outbox", parents=[common], help="outbox backlog").add_argument(
        "services", nargs="*", metavar="SERVICE"
    )
    timers = sub.add_parser("timers", parents=[common], help="parked timers").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    timers.add_parser("list", parents=[common]).add_argument("service", choices=SERVICES)
    retry = timers.add_parser("retry", parents=[common])
    retry.add_argument("service", choices=SERVICES)
    retry.add_argument("timer_id")
    deliveries = sub.add_parser("deliveries", parents=[common], help="notifications deliveries")
    dsub = deliveries.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dlist = dsub.add_parser("list", parents=[common])
    dlist.add_argument(
        "--status",
        action="append",
        choices=["failed", "rejected", "pending", "sent", "cancelled"],
        help="default: failed and rejected",
    )
    dsub.add_parser("retry", parents=[common]).add_argument("delivery_id")
    sub.add_parser("routing", parents=[common], help="unroutable escalation policies")
    dlq = sub.add_parser("dlq", parents=[common], help="dead letters").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    dlist = dlq.add_parser("list", parents=[common])
    dlist.add_argument("topics", nargs="*", metavar="DLQ_TOPIC", help="default: every DLQ")
    dlist.add_argument("--reason", help="only letters whose reason contains this")
    replay = dlq.add_parser("replay", parents=[common])
    replay.add_argument("topic", metavar="DLQ_TOPIC")
    replay.add_argument("--event-id", action="append", help="this event (repeatable)")
    replay.add_argument("--offsets", help="PARTITION:FROM-TO (inclusive)")
    replay.add_argument("--reason", help="letters whose reason contains this")
    replay.add_argument("--all", action="store_true", help="every letter not yet replayed")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    migrations = sub.add_parser("migrations", parents=[common]).add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    upgrade = migrations.add_parser("upgrade", parents=[common])
    upgrade.add_argument("service", choices=SERVICES)
    upgrade.add_argument("--sql", action="store_true", help="print the SQL, change nothing")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
