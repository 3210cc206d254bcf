"""``make run`` as a user runs it: separate service processes behind the nginx gateway, on SQLite.

The launcher is started as a subprocess (reusing the session's broker to save a JVM start), must
print READY, answer every service's health and OpenAPI document through the gateway, carry a
report through to the pager sink, and leave nothing listening after Ctrl-C.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deploy.localstack.process import free_port
from tests.e2e.launcher import (
    local_stack,
    patient_token,
    red_flag_report,
    service_port_offset,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

PREFIXES = ("scheduler", "monitoring", "notifications", "group-matching")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_local_stack_serves_every_service_through_the_gateway_and_stops_cleanly(
    kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    gateway_port, pager_port, smtp_port = free_port(), free_port(), free_port()
    offset = service_port_offset()
    service_ports = [8101 + offset + i for i in range(4)]
    args = [
        "--kafka-bootstrap", kafka_bootstrap_servers,
        "--gateway-port", str(gateway_port),
        "--pager-port", str(pager_port),
        "--smtp-port", str(smtp_port),
        "--port-offset", str(offset),
        "--data", str(tmp_path / "var"),
        "--zipkin-port", "0", "--prometheus-port", "0",  # tests/e2e/test_trace_ui.py
    ]  # fmt: skip
    with local_stack(args, ready_within=120, stop_within=60) as launch:
        base = f"http://127.0.0.1:{gateway_port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            for prefix in PREFIXES:
                health = client.get(f"/api/{prefix}/health")
                assert health.status_code == 200, prefix
                assert health.headers.get("x-request-id")
                spec = client.get(f"/api/{prefix}/openapi.json")
                assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.")

            patient = uuid.uuid4()
            created = client.post(
                f"/api/monitoring/patients/{patient}/symptom-reports",
                json=red_flag_report(),
                headers={"Authorization": f"Bearer {patient_token(patient)}"},
            )
            assert created.status_code == 201, created.text

            def pages_for_patient() -> list[dict[str, object]]:
                pages = httpx.get(f"http://127.0.0.1:{pager_port}/pages").json()
                return [
                    p for p in pages
                    if p["payload"]["custom_details"]["patient_id"] == str(patient)
                ]  # fmt: skip

            deadline = time.monotonic() + 30
            while not pages_for_patient() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(pages_for_patient()) == 1
    assert launch.proc.returncode == 0, launch.printed
    assert "stopped" in launch.output[-1]
    for port in (gateway_port, pager_port, smtp_port, *service_ports):
        assert not _listening(port), f"port {port} still listening after stop"
