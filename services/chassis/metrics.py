"""Service metrics whose labels can never carry PHI.

One :class:`ServiceMetrics` per service, on that service's ``MeterProvider``
(``telemetry.make_meter_provider``); components take it as an optional argument and default to
:data:`NO_METRICS`, so a component built without it (unit tests) records nothing. Each service
serves them as Prometheus text at ``/metrics``; the exposed names (``docs/metrics.md``, which the
alert rules and dashboards query) follow from the instrument names below: dots become
underscores, counters get ``_total``, a unit of seconds ``_seconds``, a ``{...}`` unit nothing.

Instruments and their labels (every label value comes from a fixed, low-cardinality set):

========================================  ===================================================
``http.server.request.duration`` (s)      ``http.request.method`` (known methods, else
                                          ``_OTHER``), ``http.route`` (the route *template*,
                                          absent when no route matched),
                                          ``http.response.status_code``
``taper.events.consumed``                 ``topic``, ``outcome``: one per delivery —
                                          ``processed``, ``duplicate``, ``dead_lettered`` or
                                          ``retried`` (handed back to Kafka for redelivery)
``taper.dead_letters``                    ``topic``, ``reason`` (the exception's class name)
``taper.consumer.backoffs``               ``topic``, ``cause`` (the outage's class name, or
                                          ``dead_letter_unavailable``): one per backoff before
                                          a message is handed back for redelivery
``taper.consumer.lag`` (gauge)            ``group``, ``topic``, ``partition``: messages behind
``taper.relay.published``                 ``topic``: outbox rows acknowledged by the broker
``taper.outbox.pending`` (gauge)          none: outbox rows not yet published
``taper.outbox.oldest_age`` (s, gauge)    none: age of the oldest of them (0: none pending)
``taper.timers.fired``                    ``kind``
``taper.timers.failed``                   ``kind``: failed attempts (an outage is none)
``taper.timers.parked`` (gauge)           ``kind``: timers parked now (alert on > 0)
``taper.broker.up``, ``taper.database.up``  none: 1/0, the latest probe
========================================  ===================================================

The gauges are sampled when ``/metrics`` is scraped (``chassis/sampling.py``). Topics are
checked against the contracts (anything else is ``other``), kinds and reasons must be
identifiers. Never a concrete path (it carries patient ids), a query, a header, a client address,
an exception message or any payload value.

HTTP: the OpenTelemetry FastAPI instrumentation could record the duration itself, but (0.66b2, in
its default semantic-convention mode) it labels it with the caller's ``Host`` header
(``http.host``, ``http.server_name``) — caller-controlled text — uses the old name in ms, and its
``http.target`` misses the ``include_router`` prefix on FastAPI 0.165. The newer conventions need
the process-wide ``OTEL_SEMCONV_STABILITY_OPT_IN``. So :class:`HttpMetricsMiddleware` records
exactly the three labels above, and the instrumentation gets a no-op meter provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from fastapi.routing import iter_route_contexts
from opentelemetry.metrics import (
    CallbackOptions,
    Meter,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.topics import ALL_TOPICS, DLQ_SUFFIX

Outcome = Literal["processed", "duplicate", "dead_lettered", "retried"]

OTHER = "other"
_KNOWN_TOPICS = frozenset(
    name for topic in ALL_TOPICS for name in (topic.name, topic.name + DLQ_SUFFIX)
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
_HTTP_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# The semantic conventions' advisory buckets for http.server.request.duration.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _topic(name: str) -> str:
    return name if name in _KNOWN_TOPICS else OTHER


def _identifier(value: str) -> str:
    return value if _IDENTIFIER.fullmatch(value) else OTHER


@dataclass
class Sampled:
    """What the latest sample saw (``chassis/sampling.py``); None: nothing to report."""

    database_up: bool | None = None
    broker_up: bool | None = None
    outbox_pending: int | None = None
    outbox_oldest_age_s: float | None = None
    # (group, topic, partition) -> messages behind
    consumer_lag: dict[tuple[str, str, int], int] = field(default_factory=dict)


class ServiceMetrics:
    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._enabled = meter_provider is not None
        self.sampled = Sampled()
        meter = (meter_provider or NoOpMeterProvider()).get_meter("taper.chassis")
        self._http_duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=_HTTP_BUCKETS,
        )
        self._consumed = meter.create_counter(
            "taper.events.consumed",
            unit="{event}",
            description="Event deliveries handled by a consumer, by outcome.",
        )
        self._dead_letters = meter.create_counter(
            "taper.dead_letters",
            unit="{message}",
            description="Messages sent to a dead-letter topic, by reason class.",
        )
        self._backoffs = meter.create_counter(
            "taper.consumer.backoffs",
            unit="{backoff}",
            description="Deliveries handed back to Kafka because infrastructure was down.",
        )
        self._published = meter.create_counter(
            "taper.relay.published",
            unit="{event}",
            description="Outbox rows published to Kafka (acknowledged by the broker).",
        )
        self._timers_fired = meter.create_counter(
            "taper.timers.fired", unit="{timer}", description="Durable timers fired."
        )
        self._timers_failed = meter.create_counter(
            "taper.timers.failed",
            unit="{attempt}",
            description="Durable timer attempts that failed (an outage is not counted).",
        )
        self._parked_sources: list[Callable[[], dict[str, int]]] = []
        self._timer_kinds: set[str] = set()  # reported at 0 while none of them is parked
        meter.create_observable_gauge(
            "taper.timers.parked",
            callbacks=[self._observe_parked_timers],
            unit="{timer}",
            description="Durable timers parked now, by kind (they fire no more until retried).",
        )
        self._gauge(
            meter,
            "taper.outbox.pending",
            "{row}",
            "Outbox rows not yet published.",
            lambda: self.sampled.outbox_pending,
        )
        self._gauge(
            meter,
            "taper.outbox.oldest_age",
            "s",
            "Age of the oldest unpublished outbox row (0: none).",
            lambda: self.sampled.outbox_oldest_age_s,
        )
        self._gauge(
            meter,
            "taper.broker.up",
            "",
            "1 if Kafka answered the latest probe.",
            lambda: _flag(self.sampled.broker_up),
        )
        self._gauge(
            meter,
            "taper.database.up",
            "",
            "1 if the database answered the latest probe.",
            lambda: _flag(self.sampled.database_up),
        )
        meter.create_observable_gauge(
            "taper.consumer.lag",
            callbacks=[self._observe_consumer_lag],
            unit="{message}",
            description="Messages behind: end offset minus the group's committed offset.",
        )

    @staticmethod
    def _gauge(
        meter: Meter, name: str, unit: str, description: str, value: Callable[[], float | None]
    ) -> None:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            current = value()
            if current is not None:
                yield Observation(current)

        meter.create_observable_gauge(name, callbacks=[observe], unit=unit, description=description)

    def declare(
        self,
        *,
        consumed: Iterable[str] = (),
        produced: Iterable[str] = (),
        timer_kinds: Iterable[str] = (),
    ) -> None:
        """Counters at 0 for the label sets this service will use, so that ``rate()`` and
        ``increase()`` have a series before the first event (and a dashboard no "No data")."""
        for topic in consumed:
            for outcome in get_args(Outcome):
                self._consumed.add(0, {"topic": _topic(topic), "outcome": outcome})
        for topic in produced:
            self._published.add(0, {"topic": _topic(topic)})
        for kind in timer_kinds:
            self._timer_kinds.add(_identifier(kind))
            self._timers_fired.add(0, {"kind": _identifier(kind)})
            self._timers_failed.add(0, {"kind": _identifier(kind)})

    def request_finished(
        self, *, method: str, route: str | None, status_code: int, duration_s: float
    ) -> None:
        attributes: dict[str, str | int] = {
            "http.request.method": method if method in _HTTP_METHODS else "_OTHER",
            "http.response.status_code": status_code,
        }
        if route is not None:
            attributes["http.route"] = route
        self._http_duration.record(max(duration_s, 0.0), attributes)

    def event_consumed(self, topic: str, outcome: Outcome) -> None:
        self._consumed.add(1, {"topic": _topic(topic), "outcome": outcome})

    def dead_lettered(self, topic: str, reason_class: str) -> None:
        self._dead_letters.add(1, {"topic": _topic(topic), "reason": _identifier(reason_class)})

    def consumer_backoff(self, topic: str, cause: str) -> None:
        self._backoffs.add(1, {"topic": _topic(topic), "cause": _identifier(cause)})

    def outbox_published(self, topics: Iterable[str]) -> None:
        counts: dict[str, int] = {}
        for topic in topics:
            label = _topic(topic)
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
            self._published.add(count, {"topic": label})

    def timer_fired(self, kind: str) -> None:
        self._timers_fired.add(1, {"kind": _identifier(kind)})

    def timer_failed(self, kind: str) -> None:
        self._timers_failed.add(1, {"kind": _identifier(kind)})

    def watch_parked_timers(self, source: Callable[[], dict[str, int]]) -> None:
        """Report ``source()`` (parked timers by kind) at each collection."""
        if self._enabled:
            self._parked_sources.append(source)

    def _observe_parked_timers(self, _: CallbackOptions) -> Iterable[Observation]:
        totals: dict[str, int] = dict.fromkeys(self._timer_kinds, 0) if self._parked_sources else {}
        for source in self._parked_sources:
            for kind, n in source().items():
                label = _identifier(kind)
                totals[label] = totals.get(label, 0) + n
        for label, n in totals.items():
            yield Observation(n, {"kind": label})

    def _observe_consumer_lag(self, _: CallbackOptions) -> Iterable[Observation]:
        for (group, topic, partition), behind in sorted(self.sampled.consumer_lag.items()):
            yield Observation(
                max(behind, 0),
                {"group": _identifier(group), "topic": _topic(topic), "partition": str(partition)},
            )


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


NO_METRICS = ServiceMetrics()


class HttpMetricsMiddleware:
    """ASGI middleware recording ``http.server.request.duration`` with the route template."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, routes: Sequence[BaseRoute]):
        self.app = app
        self._metrics = metrics
        self._routes = routes
        self._templates: dict[int, str | None] | None = None

    def _template(self, scope: Scope) -> str | None:
        route: Any = scope.get("route")
        if route is None:
            return None  # nothing matched (404): no http.route, as the conventions say
        if self._templates is None:
            # FastAPI puts the *included* route in the scope, whose path lacks the prefix it was
            # included with; its route contexts know the full template.
            self._templates = {
                id(ctx.original_route): ctx.path_format for ctx in iter_route_contexts(self._routes)
            }
        template = self._templates.get(id(route))
        return template if template is not None else getattr(route, "path_format", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # unless a response starts: an exception becomes a 500 outside

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._metrics.request_finished(
                method=scope.get("method", ""),
                route=self._template(scope),
                status_code=status_code,
                duration_s=time.perf_counter() - started,
            )
