"""``make run`` as a user runs it: separate service processes behind the nginx gateway, on SQLite.

The launcher is started as a subprocess (reusing the session's broker to save a JVM start), must
print READY, answer every service's health and OpenAPI document through the gateway, carry a
report through to the pager sink, and leave nothing listening after Ctrl-C.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from services.chassis.auth import Role, issue_dev_token
from services.chassis.settings import ServiceSettings
from services.monitoring.domain.reference import ciwa_b_v1

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("scheduler", "monitoring", "notifications", "group-matching")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_stack_serves_every_service_through_the_gateway_and_stops_cleanly(
    kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    gateway_port, pager_port, smtp_port = _free_port(), _free_port(), _free_port()
    offset = random.randrange(20000, 30000, 10)
    service_ports = [8101 + offset + i for i in range(4)]
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "deploy.localstack.stack",
            "--kafka-bootstrap", kafka_bootstrap_servers,
            "--gateway-port", str(gateway_port),
            "--pager-port", str(pager_port),
            "--smtp-port", str(smtp_port),
            "--port-offset", str(offset),
            "--data", str(tmp_path / "var"),
            "--zipkin-port", "0", "--prometheus-port", "0",  # tests/e2e/test_trace_ui.py
        ],
        cwd=ROOT,
        env={**os.environ, "TAPER_ENV": "development"},  # as `make run` says it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            output.append(line)
            if line.startswith("READY"):
                break
        assert output and output[-1].startswith("READY"), "".join(output)

        base = f"http://127.0.0.1:{gateway_port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            for prefix in PREFIXES:
                health = client.get(f"/api/{prefix}/health")
                assert health.status_code == 200, prefix
                assert health.headers.get("x-request-id")
                spec = client.get(f"/api/{prefix}/openapi.json")
                assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.")

            patient = uuid.uuid4()
            token = issue_dev_token(
                ServiceSettings(service_name="test"), subject="p", role=Role.PATIENT,
                patient_id=patient,
            )  # fmt: skip
            report = {
                "instrument": "ciwa-b",
                "oriented": True,
                "answers": dict.fromkeys(ciwa_b_v1().patient_items, 0),
                "red_flags": ["seizure"],
            }
            created = client.post(
                f"/api/monitoring/patients/{patient}/symptom-reports",
                json=report,
                headers={"Authorization": f"Bearer {token}"},
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
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
    assert proc.returncode == 0, "".join(output)
    assert "stopped" in output[-1]
    for port in (gateway_port, pager_port, smtp_port, *service_ports):
        assert not _listening(port), f"port {port} still listening after stop"
