"""The image's entrypoint commands start each service from a FRESH virtual environment installed
the way the Dockerfile installs it (its install RUN replayed here, paths swapped) with the source
laid out as its COPY lines lay it out: `run.py migrate <svc>`, `run.py serve <svc>` reaching /ready
against the real Kafka and PostgreSQL fixtures, `run.py healthcheck <svc>`, then SIGTERM and a
clean exit well within the grace period. The venv is built once per session (PyPI, ~1 min) and
shared by the four services, as the one image is.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import ROOT
from tests.deploy.test_container import final_stage, stages

# Building the venv downloads the locked wheels from PyPI (~3 min here): more than the default 300 s
# timeout leaves for the first test once the brokers start too.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")
GRACE_S = 30.0  # the chart's terminationGracePeriodSeconds is larger; a clean stop is far below


@pytest.fixture(scope="session")
def image_root() -> Iterator[Path]:
    """A stand-in for the image's filesystem: /opt/venv and /app under a temporary directory
    (its own, not pytest's numbered ones, which a concurrent pytest run may rotate away)."""
    root = Path(tempfile.mkdtemp(prefix="taper-image-"))
    (root / "tmp").mkdir()
    # The image's paths under our root, in one pass (the root itself may live under /tmp/).
    moved = {"/opt/venv": f"{root}/opt/venv", "/tmp/": f"{root}/tmp/"}
    for instr in stages()[0]:
        if instr["instruction"] == "COPY":
            src, dest = instr["value"].split()
            shutil.copy(ROOT / src, root / dest.lstrip("/"))
        if instr["instruction"] == "RUN":
            command = re.sub("/opt/venv|/tmp/", lambda m: moved[m.group(0)], instr["value"])
            # The image's `python` is the base image's 3.11; ours is the interpreter under test.
            command = command.replace("python -m venv", f"{shlex.quote(_base_python())} -m venv")
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    for instr in final_stage():
        if instr["instruction"] == "COPY" and not instr["value"].startswith("--from"):
            src, dest = instr["value"].split()
            target = root / dest.lstrip("/")
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _base_python() -> str:
    base = getattr(sys, "_base_executable", sys.executable)
    return base if Path(base).exists() else "python3.11"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(root: Path, service: str, dsn: str, kafka: str, port: int) -> dict[str, str]:
    """The image's ENV plus what an operator sets; nothing inherited from this test process."""
    prefix = service.upper() + "_"
    return {
        "PATH": f"{root}/opt/venv/bin:/usr/bin:/bin",
        "PYTHONPATH": f"{root}/app",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(root),
        "TAPER_ENV": "test",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        prefix + "DATABASE_URL": dsn,
        prefix + "HTTP_PORT": str(port),
        prefix + "HTTP_HOST": "127.0.0.1",
    }


def _wait_for(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_commands_run_the_service_from_a_fresh_venv(
    service: str,
    image_root: Path,
    fresh_pg_dsn: str,
    kafka_bootstrap_servers: str,
    tmp_path: Path,
) -> None:
    python = str(image_root / "opt/venv/bin/python")
    run_py = str(image_root / "app/run.py")
    port = _free_port()
    env = _env(image_root, service, fresh_pg_dsn, kafka_bootstrap_servers, port)
    cwd = image_root / "app"  # WORKDIR /app

    migrated = subprocess.run(
        [python, run_py, "migrate", service], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    log = (tmp_path / f"{service}.log").open("wb")
    proc = subprocess.Popen(
        [python, run_py, "serve", service], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )
    prefix = "/api/" + service.replace("_", "-")

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{prefix}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert _wait_for(ready, 120, proc), (tmp_path / f"{service}.log").read_text()[-4000:]
        health = subprocess.run(
            [python, run_py, "healthcheck", service], env=env, cwd=cwd, capture_output=True
        )
        assert health.returncode == 0, health.stdout
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{service} did not stop within {GRACE_S}s of SIGTERM")
        log.close()
    output = (tmp_path / f"{service}.log").read_text()
    # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM (143 in a container)
    # after "Application shutdown complete" is a drained stop, anything else is not.
    assert code in (0, -signal.SIGTERM), output[-4000:]
    assert "Application shutdown complete" in output, output[-4000:]


def test_healthcheck_fails_when_nothing_answers(image_root: Path) -> None:
    env = _env(image_root, "monitoring", "postgresql+asyncpg://x@127.0.0.1/x", "x:1", _free_port())
    done = subprocess.run(
        [
            str(image_root / "opt/venv/bin/python"),
            str(image_root / "app/run.py"),
            "healthcheck",
            "monitoring",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "does not answer" in done.stdout
