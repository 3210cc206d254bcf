"""Zipkin (server 3.x with its Lens UI) for ``make run``: the trace backend the services export to.

``zipkin_jar()`` resolves the pinned executable jar once from Maven Central
(``deploy/observability/zipkin-pom.xml``, cached like the Kafka jars); ``LocalZipkin(port)``
runs it with ``java -jar`` (in-memory storage: traces live as long as the stack) and waits for
``/health``. The services send Zipkin JSON v2 to ``endpoint`` (``OTEL_EXPORTER_ZIPKIN_ENDPOINT``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from deploy.localstack.kafka import cache_root, hard_kill, java_executable, terminate
from deploy.localstack.logrotate import RotatingLog

POM = Path(__file__).resolve().parents[1] / "observability" / "zipkin-pom.xml"


class ZipkinLaunchError(RuntimeError):
    pass


def zipkin_jar(pom: Path = POM) -> Path:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    lib = root / f"zipkin-{digest}"
    marker = lib / ".complete"
    with open(root / f"zipkin-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one resolver at a time, the others wait for it
        if not marker.exists():
            mvn = shutil.which("mvn")
            if mvn is None:
                raise ZipkinLaunchError("Maven (`mvn`) is needed once to fetch the Zipkin jar")
            shutil.rmtree(lib, ignore_errors=True)
            lib.mkdir(parents=True)
            cmd = [
                mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}", "-DincludeScope=runtime",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0 or not any(lib.glob("zipkin-server-*-exec.jar")):
                shutil.rmtree(lib, ignore_errors=True)
                out = (proc.stdout + proc.stderr)[-3000:]
                raise ZipkinLaunchError(f"mvn could not fetch the Zipkin jar:\n{out}")
            marker.write_text(f"{pom}\n")
    return next(lib.glob("zipkin-server-*-exec.jar"))


class LocalZipkin:
    def __init__(self, port: int, log: Path, *, startup_timeout: float = 120.0) -> None:
        self.port = port
        self.log = log
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/v2/spans"

    def start(self) -> LocalZipkin:
        """Start and wait until it answers."""
        return self.spawn().wait_ready()

    def spawn(self) -> LocalZipkin:
        """Start without waiting (the JVM takes a while: the caller starts others meanwhile)."""
        cmd = [
            java_executable(), "-Xms64m", "-Xmx384m", "-XX:TieredStopAtLevel=1",
            "-jar", str(zipkin_jar()),
        ]  # fmt: skip
        env = {**os.environ, "QUERY_PORT": str(self.port), "STORAGE_TYPE": "mem"}
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        assert self.proc.stdout is not None
        RotatingLog(self.log).pump(self.proc.stdout)
        return self

    def wait_ready(self) -> LocalZipkin:
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ZipkinLaunchError(
                    f"Zipkin exited with {self.proc.returncode} (log: {self.log})"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.kill()
        raise ZipkinLaunchError(f"Zipkin not up within {self.startup_timeout}s (log: {self.log})")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15)

    def kill(self) -> None:
        if self.proc is not None:
            hard_kill(self.proc)
