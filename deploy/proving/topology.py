"""What the proving grounds need from a running topology (``deploy.localstack.cluster``
implements it): where things answer, which processes can be faulted, and what the recording
sinks received. The harness depends on this protocol only, so it can be driven against any
topology that implements it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

Channel = Literal["webhook", "sms", "mail"]
FaultKind = Literal["kill", "stop", "restart"]  # SIGKILL + start again, SIGSTOP/SIGCONT, clean


@dataclass(frozen=True)
class Endpoints:
    gateway_url: str  # e.g. http://127.0.0.1:8080 (paths /api/<service>/...)
    kafka_bootstrap: str  # comma-separated brokers
    database_urls: dict[str, str]  # service name -> async SQLAlchemy URL (postgresql+asyncpg)
    logs_dir: Path  # one <target>.log per process (stdout+stderr), nginx logs under gateway/
    clock_scale: float  # scaled clock: service seconds per wall second


@dataclass(frozen=True)
class Target:
    name: str  # e.g. "monitoring-1", "kafka-2", "postgres", "gateway", "sinks"
    group: str  # fault target group reported in tables: "monitoring", "kafka", "postgres", ...
    pid: int | None  # None while down


class Topology(Protocol):
    endpoints: Endpoints

    def targets(self) -> list[Target]:
        """Every process that may be faulted (not the sinks), current pids."""
        ...

    def kafka_roles(self) -> dict[str, str]:
        """Role -> target name, e.g. {"controller": "kafka-1", "dlq_leader": "kafka-3"}: who
        holds the active controller and the leader of a dead-letter topic's partition 0 now."""
        ...

    def kill(self, target: str) -> None:
        """SIGKILL the process (kill -9); it stays down until :meth:`start`."""
        ...

    def stop(self, target: str) -> None:
        """SIGSTOP (the process hangs: sockets open, nothing answers)."""
        ...

    def cont(self, target: str) -> None:
        """SIGCONT after :meth:`stop`."""
        ...

    def start(self, target: str) -> None:
        """Start a killed process again with the same settings and data."""
        ...

    def wait_healthy(self, timeout: float) -> None:
        """Block until every process is up and answers (raise TimeoutError otherwise)."""
        ...

    def sink_requests(self, channel: Channel) -> list[dict[str, Any]]:
        """Every request the recording sink received on ``channel`` since start, in order,
        duplicates included (a retried page is two entries): the parsed body plus
        ``received_at``."""
        ...
