"""A topology in memory (no processes): records what the harness did to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.proving.topology import Channel, Endpoints, Target


class FakeTopology:
    def __init__(self, names: dict[str, str] | None = None) -> None:
        names = names or {
            "scheduler-1": "scheduler",
            "scheduler-2": "scheduler",
            "kafka-1": "kafka",
            "kafka-2": "kafka",
            "kafka-3": "kafka",
            "postgres": "postgres",
            "gateway": "gateway",
        }
        self.endpoints = Endpoints("http://gw", "k:1", {}, Path("/tmp"), 1.0)
        self._targets = {n: Target(n, g, 100 + i) for i, (n, g) in enumerate(names.items())}
        self.calls: list[tuple[str, str]] = []
        self.roles = {"controller": "kafka-2", "dlq_leader": "kafka-3"}
        self.heals = True

    def targets(self) -> list[Target]:
        return list(self._targets.values())

    def kafka_roles(self) -> dict[str, str]:
        return dict(self.roles)

    def kill(self, target: str) -> None:
        self.calls.append(("kill", target))

    def stop(self, target: str) -> None:
        self.calls.append(("stop", target))

    def cont(self, target: str) -> None:
        self.calls.append(("cont", target))

    def start(self, target: str) -> None:
        self.calls.append(("start", target))

    def wait_healthy(self, timeout: float) -> None:
        self.calls.append(("wait_healthy", ""))
        if not self.heals:
            raise TimeoutError

    def sink_requests(self, channel: Channel) -> list[dict[str, Any]]:
        return []
