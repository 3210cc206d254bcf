"""``make run``'s trace UI and metrics, as an on-call engineer meets them.

The launcher runs with Zipkin and Prometheus (the session's broker is reused). A red-flag report
goes in through the gateway with a request id; its trace is then fetched **from Zipkin's API**:
one trace with spans of monitoring, scheduler and notifications and the outgoing webhook call,
no patient id in any span name or tag. Headless Chromium shoots the trace in Zipkin's UI
(``TAPER_UPDATE_SCREENSHOTS=1`` refreshes ``docs/trace-red-flag.png``). Prometheus scrapes all
four services, and ``taper_broker_up`` is 1 for each.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from deploy.localstack.browser import PNG_SIGNATURE, screenshot_url
from deploy.localstack.process import free_port
from tests.e2e.launcher import (
    ROOT,
    local_stack,
    patient_token,
    red_flag_report,
    service_port_offset,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")


def _until(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_red_flag_reports_trace_is_in_zipkin_and_prometheus_scrapes_every_service(
    kafka_bootstrap_servers: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("gateway", "pager", "smtp", "zipkin", "prometheus")}
    offset = service_port_offset()
    args = [
        "--kafka-bootstrap", kafka_bootstrap_servers,
        "--gateway-port", str(ports["gateway"]),
        "--pager-port", str(ports["pager"]),
        "--smtp-port", str(ports["smtp"]),
        "--zipkin-port", str(ports["zipkin"]),
        "--prometheus-port", str(ports["prometheus"]),
        "--port-offset", str(offset),
        "--data", str(tmp_path / "var"),
        "--startup-timeout", "240",
    ]  # fmt: skip
    with local_stack(args, ready_within=300, stop_within=90) as launch:
        zipkin = f"http://127.0.0.1:{ports['zipkin']}"
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        assert f"{zipkin}/zipkin/" in launch.printed and prometheus in launch.printed

        patient = uuid.uuid4()
        request_id = f"redflag-{uuid.uuid4().hex[:12]}"
        created = httpx.post(
            f"http://127.0.0.1:{ports['gateway']}/api/monitoring/patients/{patient}/symptom-reports",
            json=red_flag_report(),
            headers={
                "Authorization": f"Bearer {patient_token(patient)}",
                "X-Request-ID": request_id,
            },
            timeout=10,
        )
        assert created.status_code == 201, created.text

        def the_trace() -> list[dict[str, Any]] | None:
            found = httpx.get(
                f"{zipkin}/api/v2/traces",
                params={
                    "serviceName": "monitoring",
                    "annotationQuery": f"taper.request_id={request_id}",
                    "lookback": 600_000,
                    "limit": 5,
                },
                timeout=5,
            ).json()
            if len(found) != 1:
                return None
            trace: list[dict[str, Any]] = httpx.get(
                f"{zipkin}/api/v2/trace/{found[0][0]['traceId']}", timeout=5
            ).json()
            services = {s.get("localEndpoint", {}).get("serviceName") for s in trace}
            webhook = [s for s in trace if s.get("name") == "post webhook"]
            wanted = {"monitoring", "scheduler", "notifications"}
            return trace if wanted <= services and webhook else None

        trace = _until("the whole trace in Zipkin", the_trace, timeout=90)
        assert len({s["traceId"] for s in trace}) == 1
        [webhook] = [s for s in trace if s["name"] == "post webhook"]
        assert webhook["kind"] == "CLIENT"
        assert webhook["localEndpoint"]["serviceName"] == "notifications"
        assert webhook["tags"]["http.response.status_code"] in ("200", "202")
        # opaque ids only: the patient's id is in the request path, never in a span
        leaks = [s for s in trace if str(patient) in json.dumps(s)]
        assert leaks == [], json.dumps(leaks, indent=1)
        server = [s for s in trace if s.get("tags", {}).get("taper.request_id") == request_id]
        assert server and server[0]["tags"]["http.target"].endswith("{patient_id}/symptom-reports")

        trace_id = trace[0]["traceId"]
        png = screenshot_url(f"{zipkin}/zipkin/traces/{trace_id}", tmp_path / "trace.png")
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        assert png.stat().st_size > 20_000  # a rendered page, not a blank one
        if os.environ.get("TAPER_UPDATE_SCREENSHOTS"):
            shutil.copy(png, ROOT / "docs" / "trace-red-flag.png")

        def all_targets_up() -> list[dict[str, Any]] | None:
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
            active = targets["data"]["activeTargets"]
            return active if len(active) == 4 and all(t["health"] == "up" for t in active) else None

        active = _until("Prometheus scraping all four services", all_targets_up, timeout=60)
        assert {t["labels"]["job"] for t in active} == {
            "scheduler", "monitoring", "notifications", "group_matching",
        }  # fmt: skip

        def broker_up() -> dict[str, float] | None:
            result = httpx.get(
                f"{prometheus}/api/v1/query", params={"query": "taper_broker_up"}, timeout=5
            ).json()["data"]["result"]
            values = {r["metric"]["job"]: float(r["value"][1]) for r in result}
            return values if len(values) == 4 else None

        assert set(_until("taper_broker_up from every job", broker_up, 60).values()) == {1.0}
    assert launch.proc.returncode == 0, launch.printed
    for port in (ports["zipkin"], ports["prometheus"]):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
