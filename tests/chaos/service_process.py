"""A service as ``make run`` starts it: its own process and database, killable with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from tests.chaos.evidence import skipped_duplicates

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    def __init__(
        self,
        service: str,
        bootstrap: str,
        database_url: str,
        log: Path,
        **settings: str,
    ) -> None:
        """``settings``: the service's own variables without their prefix (``RELAY_ENABLED``)."""
        self.service = service
        self.prefix = service.upper() + "_"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            f"{self.prefix}DATABASE_URL": database_url,
            f"{self.prefix}HTTP_PORT": str(free_port()),
            "TAPER_ENV": "test",  # said explicitly: settings have no default environment
            **{self.prefix + k: v for k, v in settings.items()},
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def skipped(self, event_ids: list[uuid.UUID]) -> list[str]:
        """The given events this process skipped as duplicates, over all its runs (its log)."""
        return skipped_duplicates(self.log, event_ids) if self.log.exists() else []

    def setting(self, name: str) -> str:
        return self.env[self.prefix + name]

    def set(self, name: str, value: str) -> None:
        """Takes effect at the next ``start()``."""
        self.env[self.prefix + name] = value

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}.entrypoints.main"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
