"""One ``LocalCluster`` (``make run-cluster``'s shape) for the whole module: it takes minutes to
start on a small machine. A test that faults a process restores it and waits until the cluster is
healthy again before it ends, so the next test starts from the full shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.localstack.cluster import LocalCluster, wait_for
from deploy.localstack.gateway import GatewayLaunchError
from deploy.localstack.kafka import KafkaLaunchError
from deploy.localstack.postgres import PostgresLaunchError
from services.chassis.auth import Role, issue_dev_token
from services.chassis.settings import ServiceSettings
from services.monitoring.domain.reference import ciwa_b_v1
from tests.plugins.infra import unavailable

# Broker restarts under load can take minutes here (2 cores shared with everything else).
HEALTHY_TIMEOUT = 600.0


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    topology = LocalCluster(startup_timeout=HEALTHY_TIMEOUT)
    try:
        topology.up()
    except (KafkaLaunchError, PostgresLaunchError, GatewayLaunchError) as exc:
        topology.close()  # no java / Maven / PostgreSQL / nginx here: a failure on CI
        unavailable(f"the local cluster did not start: {exc}")
    except BaseException:
        topology.close()  # came up wrong or too slowly: a failure, not a skip
        raise
    try:
        yield topology
    finally:
        topology.close()


def _headers(role: Role, patient: uuid.UUID) -> dict[str, str]:
    settings = ServiceSettings(service_name="cluster-tests", environment="development")
    if role is Role.PATIENT:
        token = issue_dev_token(settings, subject="p-1", role=role, patient_id=patient)
    else:
        token = issue_dev_token(settings, subject="c-1", role=role, panel=[patient])
    return {"Authorization": f"Bearer {token}"}


def report_red(gateway_url: str, patient: uuid.UUID) -> None:
    """Through the gateway only: a clinician starts a taper, the patient reports a seizure."""
    with httpx.Client(base_url=gateway_url, timeout=30.0) as client:
        created = client.post(
            f"/api/scheduler/patients/{patient}/taper",
            json={"drug": "diazepam", "half_life_class": "long", "current_daily_dose_mg": "10"},
            headers=_headers(Role.CLINICIAN, patient),
        )
        assert created.status_code == 201, created.text
        answers = dict.fromkeys(ciwa_b_v1().patient_items, 1)
        report = client.post(
            f"/api/monitoring/patients/{patient}/symptom-reports",
            json={"instrument": "ciwa-b", "oriented": True, "answers": answers,
                  "red_flags": ["seizure"]},
            headers={**_headers(Role.PATIENT, patient), "Idempotency-Key": str(uuid.uuid4())},
        )  # fmt: skip
        assert report.status_code == 201, report.text
        assert report.json()["severity"] == "RED"


def pages_for(cluster: LocalCluster, patient: uuid.UUID) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.sink_requests("webhook")
        if p.get("payload", {}).get("custom_details", {}).get("patient_id") == str(patient)
    ]


def paged_once(cluster: LocalCluster, patient: uuid.UUID, timeout: float) -> None:
    """The patient's page reaches the pager sink, and exactly once (no second request)."""
    wait_for("the page at the sink", lambda: pages_for(cluster, patient), timeout)
    # Every consumer has committed what it processed and nothing is left in any outbox: had a
    # second request been on its way, it would have been sent by now.
    wait_for("quiescence", lambda: cluster.quiescent(), timeout, interval=1.0)
    assert len(pages_for(cluster, patient)) == 1
