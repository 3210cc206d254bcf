"""``make run``'s launcher (``python -m deploy.localstack.stack``) as the end-to-end tests start
it: a subprocess on the session's broker, waited for until it prints READY, stopped with Ctrl-C
(SIGINT) when the block ends; and the red-flag report a patient sends through it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.chassis.auth import Role, issue_dev_token
from services.chassis.settings import ServiceSettings
from services.monitoring.domain.reference import ciwa_b_v1

ROOT = Path(__file__).resolve().parents[2]


def service_port_offset() -> int:
    """A ``--port-offset`` whose four service ports (8101-8104 + offset) are free now and lie below
    the kernel's ephemeral range (32768+ on Linux): an offset landing in that range collided with a
    client socket of a concurrent process (a flake seen as "address already in use")."""
    rng = random.Random()
    for _ in range(200):
        offset = rng.randrange(2000, 24000, 10)
        if all(_bindable(8101 + i + offset) for i in range(4)):
            return offset
    raise RuntimeError("no free block of four service ports below 32768")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Launch:
    """The launcher's process and every line it printed (the rest is added once it stopped)."""

    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def printed(self) -> str:
        return "".join(self.output)


@contextmanager
def local_stack(
    args: Sequence[str], *, ready_within: float, stop_within: float
) -> Iterator[Launch]:
    """The launcher with ``args`` (``--kafka-bootstrap``, ports, ``--data`` …), as ``make run``
    starts it (``TAPER_ENV=development``), once it printed READY (within ``ready_within``
    seconds, or an assertion error with what it printed); on exit it gets SIGINT and
    ``stop_within`` seconds to end. The caller checks ``launch.proc.returncode``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.localstack.stack", *args],
        cwd=ROOT,
        env={**os.environ, "TAPER_ENV": "development"},  # as `make run` says it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    launch = Launch(proc)
    try:
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            launch.output.append(line)
            if line.startswith("READY"):
                break
        assert launch.output and launch.output[-1].startswith("READY"), launch.printed
        yield launch
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=stop_within)
        launch.output.append(rest)


def patient_token(patient: uuid.UUID) -> str:
    """A development token of ``patient`` (the launcher's services accept it)."""
    return issue_dev_token(
        ServiceSettings(service_name="test"), subject="p", role=Role.PATIENT, patient_id=patient
    )


def red_flag_report() -> dict[str, Any]:
    """A CIWA-B report of no symptoms but a seizure: a red flag, paged at once."""
    return {
        "instrument": "ciwa-b",
        "oriented": True,
        "answers": dict.fromkeys(ciwa_b_v1().patient_items, 0),
        "red_flags": ["seizure"],
    }
