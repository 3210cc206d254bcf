"""Zipkin (server 3.x with its Lens UI) for ``make run``: the trace backend the services export to.

``zipkin_jar()`` resolves the pinned executable jar once from Maven Central
(``deploy/observability/zipkin-pom.xml``, cached like the Kafka jars); ``LocalZipkin(port)``
runs it with ``java -jar`` (in-memory storage: traces live as long as the stack) and waits for
``/health``. The services send Zipkin JSON v2 to ``endpoint`` (``OTEL_EXPORTER_ZIPKIN_ENDPOINT``).
"""

from __future__ import annotations

import os
from pathlib import Path

from deploy.localstack.process import (
    ChildServer,
    java_executable,
    maven_dependencies,
    spawn_rotating,
    wait_http_ok,
)

POM = Path(__file__).resolve().parents[1] / "observability" / "zipkin-pom.xml"


class ZipkinLaunchError(RuntimeError):
    pass


def zipkin_jar(pom: Path = POM) -> Path:
    """The executable Zipkin server jar, resolved once into the cache (like the Kafka jars)."""
    lib = maven_dependencies(
        pom,
        name="Zipkin",
        prefix="zipkin",
        expect="zipkin-server-*-exec.jar",
        error=ZipkinLaunchError,
    )
    return next(lib.glob("zipkin-server-*-exec.jar"))


class LocalZipkin(ChildServer):
    def __init__(self, port: int, log: Path, *, startup_timeout: float = 120.0) -> None:
        self.port = port
        self.log = log
        self.startup_timeout = startup_timeout

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
            java_executable(ZipkinLaunchError), "-Xms64m", "-Xmx384m", "-XX:TieredStopAtLevel=1",
            "-jar", str(zipkin_jar()),
        ]  # fmt: skip
        env = {**os.environ, "QUERY_PORT": str(self.port), "STORAGE_TYPE": "mem"}
        self.proc = spawn_rotating(cmd, self.log, env)
        return self

    def wait_ready(self) -> LocalZipkin:
        assert self.proc is not None, "spawn() first"
        wait_http_ok(
            self.proc,
            f"{self.url}/health",
            what="Zipkin",
            log_path=self.log,
            timeout=self.startup_timeout,
            interval=0.5,
            error=ZipkinLaunchError,
        )
        return self
