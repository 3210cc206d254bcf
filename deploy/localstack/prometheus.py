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
from collections.abc import Mapping
from pathlib import Path

from deploy.localstack.process import ChildServer, spawn_rotating, wait_http_ok

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


class LocalPrometheus(ChildServer):
    def __init__(
        self, port: int, ports: Mapping[str, int], data: Path, *, startup_timeout: float = 60.0
    ) -> None:
        self.port = port
        self.ports = dict(ports)
        self.data = data
        self.startup_timeout = startup_timeout

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
        self.proc = spawn_rotating(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data / 'tsdb'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log,
        )
        wait_http_ok(
            self.proc,
            f"{self.url}/-/ready",
            what="prometheus",
            log_path=log,
            timeout=self.startup_timeout,
            interval=0.3,
            error=PrometheusLaunchError,
        )
        return self
