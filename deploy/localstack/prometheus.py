"""Prometheus for ``make run`` (Debian's ``prometheus``), scraping every service's ``/metrics``.

``find_prometheus()`` returns the binary, installing Debian's package as root when it is missing
(like ``gateway.find_nginx``). ``LocalPrometheus`` renders ``deploy/observability/prometheus.yml``
with the stack's real ports and absolute rule paths into its data dir, checks it with
``promtool`` when present, runs the server on 127.0.0.1 and waits for ``/-/ready``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from deploy.localstack.kafka import hard_kill, terminate
from deploy.localstack.logrotate import RotatingLog

CONFIG = Path(__file__).resolve().parents[1] / "observability" / "prometheus.yml"
DEFAULT_PORTS = {
    "scheduler": 8101,
    "monitoring": 8102,
    "notifications": 8103,
    "group_matching": 8104,
}


class PrometheusLaunchError(RuntimeError):
    pass


def find_prometheus(install: bool = True) -> str:
    for cand in ("prometheus", "/usr/bin/prometheus"):
        path = shutil.which(cand)
        if path:
            return path
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
        ):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise PrometheusLaunchError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        return find_prometheus(install=False)
    raise PrometheusLaunchError("prometheus not found; as root: apt-get install prometheus")


def render_config(ports: Mapping[str, int], template: Path = CONFIG) -> str:
    """The committed config with each service's port and the rules directory made absolute."""
    text = template.read_text()
    for service, default in DEFAULT_PORTS.items():
        text = text.replace(f'"127.0.0.1:{default}"', f'"127.0.0.1:{ports[service]}"')
    rules = template.parent / "rules"
    return re.sub(r'"rules/', f'"{rules}/', text)


class LocalPrometheus:
    def __init__(
        self, port: int, ports: Mapping[str, int], data: Path, *, startup_timeout: float = 60.0
    ) -> None:
        self.port = port
        self.ports = dict(ports)
        self.data = data
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> LocalPrometheus:
        binary = find_prometheus()
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.data / "prometheus.yml"
        config.write_text(render_config(self.ports))
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run(
                [promtool, "check", "config", str(config)], capture_output=True, text=True
            )
            if check.returncode != 0:
                raise PrometheusLaunchError(
                    f"promtool check config failed:\n{check.stdout}{check.stderr}"
                )
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data / 'tsdb'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        RotatingLog(log).pump(self.proc.stdout)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusLaunchError(
                    f"prometheus exited with {self.proc.returncode} (log: {log})"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise PrometheusLaunchError(f"prometheus not ready within {self.startup_timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15)

    def kill(self) -> None:
        if self.proc is not None:
            hard_kill(self.proc)
