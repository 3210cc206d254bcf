"""Readiness follows what a request needs: the database. Kafka being away keeps the API in service
(the outbox takes the writes) and shows in ``/health``'s detail and ``taper_broker_up`` instead.
Also: the log rotation ``make run`` uses, and traces that carry the route, not the path."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deploy.localstack.logrotate import RotatingLog, rotate_if_large
from services.chassis.telemetry import QuietExporter, make_tracer_provider
from tests.runtimes import migrated_runtime


async def test_ready_needs_the_database_only_and_health_tells_the_broker_is_down(
    tmp_path: Path,
) -> None:
    runtime = await migrated_runtime("monitoring", tmp_path)  # no broker anywhere
    transport = httpx.ASGITransport(app=runtime.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/api/monitoring/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "checks": {"database": True}}

            deadline = time.monotonic() + 10
            while True:  # the detail is the latest sample; the first one may still be running
                health = (await client.get("/api/monitoring/health")).json()
                if health["dependencies"]["broker"] != "unknown" or time.monotonic() > deadline:
                    break
            assert health["status"] == "ok"
            assert health["dependencies"] == {"database": "up", "broker": "down"}

            metrics = (await client.get("/metrics")).text
            assert "taper_broker_up 0.0" in metrics and "taper_database_up 1.0" in metrics

            await runtime.engine.dispose()
            (tmp_path / "monitoring.db").unlink()
            (tmp_path / "monitoring.db").mkdir()  # a database that cannot be opened
            ready = await client.get("/api/monitoring/ready")
            assert ready.status_code == 503
            assert ready.json() == {"status": "not ready", "checks": {"database": False}}
    finally:
        await runtime.engine.dispose()


def test_make_runs_logs_rotate_at_the_size_limit_keeping_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    log = RotatingLog(path, max_bytes=100, backups=2)
    for i in range(10):
        log.write(f"line {i:02d} ".encode() + b"x" * 30 + b"\n")  # 39 bytes: two lines a file
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log", "svc.log.1", "svc.log.2"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert path.read_text().startswith("line 08")  # newest here, the oldest dropped
    assert (tmp_path / "svc.log.2").read_text().startswith("line 04")


def test_spans_carry_the_route_template_not_the_concrete_path() -> None:
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("svc", exporter=exporter)
    patient = uuid.uuid4()
    with provider.get_tracer("t").start_as_current_span(
        "GET /api/svc/patients/{patient_id}",
        attributes={
            "http.target": f"/api/svc/patients/{patient}?q=zzphi",
            "http.url": f"http://h/api/svc/patients/{patient}?q=zzphi",
            "http.route": "/api/svc/patients/{patient_id}",
        },
    ):
        pass
    [span] = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "http.target": "/api/svc/patients/{patient_id}",
        "http.route": "/api/svc/patients/{patient_id}",
    }


class _Unreachable(InMemorySpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("connection refused")


def test_an_unreachable_trace_backend_is_one_warning_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    quiet = QuietExporter(_Unreachable(), "zipkin")
    assert quiet.export([]) == SpanExportResult.FAILURE
    assert quiet.export([]) == SpanExportResult.FAILURE
    lines = [r for r in caplog.records if r.name == "services.chassis.telemetry"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert lines[0].__dict__["error_type"] == "ConnectionError"


def test_a_log_another_process_writes_is_shifted_only_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"a" * 100)
    assert not rotate_if_large(path, max_bytes=100, backups=2)
    path.write_bytes(b"b" * 101)
    assert rotate_if_large(path, max_bytes=100, backups=2)
    assert not path.exists() and (tmp_path / "access.log.1").read_bytes() == b"b" * 101
    assert not rotate_if_large(path, max_bytes=100, backups=2)  # nginx has not reopened it yet
