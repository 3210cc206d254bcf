"""``make run``: Kafka, the four services and the nginx gateway on this machine, SQLite by default,
with Zipkin (traces and their UI) and Prometheus (every service's ``/metrics``) beside them.

Starts (or reuses, with ``--kafka-bootstrap``) a single-node KRaft broker whose data lives in
``var/kafka``, provisions every topic and dead-letter topic, runs each service as its own process
(``python -m services.<name>.entrypoints.main``), a development pager sink that prints the pages
notifications sends, and the gateway. Prints the URLs once everything answers ``/health`` through
the gateway. Ctrl-C (or SIGTERM) stops everything, children first, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from contracts import ALL_TOPICS
from deploy.localstack.gateway import LocalGateway
from deploy.localstack.kafka import LocalKafka
from deploy.localstack.logrotate import RotatingLog, rotate_if_large
from deploy.localstack.process import signal_group
from deploy.localstack.prometheus import LocalPrometheus
from deploy.localstack.zipkin import LocalZipkin
from services.chassis.kafka import PLAINTEXT, KafkaSecurity, ensure_topics
from services.chassis.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # python package and settings prefix
    port: int

    @property
    def prefix(self) -> str:
        return "/api/" + self.name.replace("_", "-")

    @property
    def env_prefix(self) -> str:
        return self.name.upper() + "_"


SERVICES = (
    ServiceSpec("scheduler", 8101),
    ServiceSpec("monitoring", 8102),
    ServiceSpec("notifications", 8103),
    ServiceSpec("group_matching", 8104),
)


class Stack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.var = Path(args.data).resolve()
        self.kafka: LocalKafka | None = None
        self.gateway: LocalGateway | None = None
        self.zipkin: LocalZipkin | None = None
        self.prometheus: LocalPrometheus | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.bootstrap = args.kafka_bootstrap

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        (self.var / "logs").mkdir(exist_ok=True)
        if not self.bootstrap:
            print(f"starting Kafka (data in {self.var / 'kafka'}) ...", flush=True)
            kafka = LocalKafka(port=self.args.kafka_port, base_dir=self.var / "kafka")
            self.kafka = kafka.start()
            self.bootstrap = kafka.bootstrap_servers
        # A given broker: the KAFKA_SECURITY_* the services inherit too. Ours: plaintext.
        security = PLAINTEXT
        if self.args.kafka_bootstrap:
            stack_wide = ServiceSettings(service_name="stack", environment="development")
            security = KafkaSecurity.from_settings(stack_wide)
        created = ensure_topics(self.bootstrap, ALL_TOPICS, security=security)
        print(f"Kafka at {self.bootstrap}; topics created: {len(created)}", flush=True)

        logs = self.var / "logs"
        if self.args.zipkin_port:  # the JVM starts while the services do
            self.zipkin = LocalZipkin(self.args.zipkin_port, logs / "zipkin.log").spawn()

        anchor = datetime.now(UTC).isoformat()
        common = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TAPER_CLOCK_SCALE": str(self.args.clock_scale),
            "TAPER_CLOCK_ANCHOR": anchor,  # one "now" for every service of this stack
            "TAPER_ENV": "development",
            "PYTHONUNBUFFERED": "1",
        }
        if self.zipkin is not None:
            common["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = self.zipkin.endpoint
        sink_port = self.args.pager_port
        self._spawn(
            "pager_sink",
            [
                sys.executable,
                "-m",
                "deploy.localstack.pager_sink",
                "--port",
                str(sink_port),
                "--smtp-port",
                str(self.args.smtp_port),
            ],
            common,
        )
        for spec in SERVICES:
            port = spec.port + self.args.port_offset
            env = {
                **common,
                f"{spec.env_prefix}HTTP_PORT": str(port),
                f"{spec.env_prefix}DATABASE_URL": self._database_url(spec),
            }
            if spec.name == "notifications":
                env["NOTIFICATIONS_PAGE_WEBHOOK_URL"] = f"http://127.0.0.1:{sink_port}/pages"
                env["NOTIFICATIONS_SMS_BASE_URL"] = f"http://127.0.0.1:{sink_port}/sms"
                env["NOTIFICATIONS_SMTP_PORT"] = str(self.args.smtp_port)
                env["NOTIFICATIONS_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{self.args.gateway_port}"
            self._spawn(
                spec.name,
                [sys.executable, "-m", f"services.{spec.name}.entrypoints.main"],
                env,
            )

        gateway = LocalGateway(
            port=self.args.gateway_port,
            upstreams={s.name: s.port + self.args.port_offset for s in SERVICES},
            run_dir=self.var / "gateway",
            cors_origins=self.args.cors_origins,
        )
        gateway.start()
        self.gateway = gateway
        if self.args.prometheus_port:
            ports = {s.name: s.port + self.args.port_offset for s in SERVICES}
            self.prometheus = LocalPrometheus(
                self.args.prometheus_port, ports, self.var / "prometheus"
            ).start(logs / "prometheus.log")
        if self.zipkin is not None:
            self.zipkin.wait_ready()
        self._wait_healthy()

    def _database_url(self, spec: ServiceSpec) -> str:
        if self.args.database_url_template:
            return str(self.args.database_url_template.format(service=spec.name))
        return f"sqlite+aiosqlite:///{self.var / (spec.name + '.db')}"

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        # Rotated (10 MB x 5): a stack left running for days does not fill the disk.
        RotatingLog(self.var / "logs" / f"{name}.log").pump(proc.stdout)
        self.children[name] = proc

    def _wait_healthy(self) -> None:
        base = f"http://127.0.0.1:{self.args.gateway_port}"
        deadline = time.monotonic() + self.args.startup_timeout
        pending = {s.name: f"{base}{s.prefix}/ready" for s in SERVICES}
        with httpx.Client(timeout=2.0) as client:
            while pending and time.monotonic() < deadline:
                self._check_children()
                for name, url in list(pending.items()):
                    try:
                        if client.get(url).status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                time.sleep(0.3)
        if pending:
            raise RuntimeError(
                f"not ready within {self.args.startup_timeout}s: {', '.join(pending)} "
                f"(logs in {self.var / 'logs'})"
            )
        print("\nThe taper stack is up:", flush=True)
        print(f"  gateway         {base}", flush=True)
        for spec in SERVICES:
            print(f"  {spec.name:<15} {base}{spec.prefix}/docs   (health: {spec.prefix}/health)")
        print(f"  Kafka           {self.bootstrap}")
        sink = f"http://127.0.0.1:{self.args.pager_port}"
        print(f"  provider sinks  {sink}/pages {sink}/sms {sink}/mail (log: var/logs)")
        if self.zipkin is not None:
            print(f"  traces (Zipkin) {self.zipkin.url}/zipkin/", flush=True)
        if self.prometheus is not None:
            print(f"  Prometheus      {self.prometheus.url}/targets", flush=True)
        direct = ", ".join(f"{s.port + self.args.port_offset}" for s in SERVICES)
        print(f"  /metrics        http://127.0.0.1:<port>/metrics (ports {direct})", flush=True)
        print(f"  logs            {self.var / 'logs'} (rotated: 10 MB x 5)")
        print("  dev token       .venv/bin/python -m services.chassis.devtoken --role clinician")
        print("READY  (Ctrl-C stops everything)", flush=True)

    def _check_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} (log: {self.var / 'logs' / name}.log)"
                )

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.gateway is not None:
            self.gateway.stop()
        for proc in self.children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.zipkin is not None:
            self.zipkin.stop()
        if self.kafka is not None:
            self.kafka.stop()

    def run_forever(self) -> None:
        while True:
            self._check_children()
            self._rotate_gateway_logs()
            time.sleep(1.0)

    def _rotate_gateway_logs(self) -> None:
        gateway = self.gateway
        if gateway is None or gateway.proc is None:
            return
        rotated = [rotate_if_large(p) for p in (gateway.access_log, gateway.error_log)]
        if any(rotated):
            signal_group(gateway.proc, signal.SIGUSR1)  # nginx reopens its log files


def _parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gateway-port", type=int, default=int(env("TAPER_GATEWAY_PORT", "8080")))
    p.add_argument("--kafka-port", type=int, default=int(env("TAPER_KAFKA_PORT", "9092")))
    p.add_argument(
        "--kafka-bootstrap",
        default=env("TAPER_KAFKA_BOOTSTRAP", ""),
        help="use this broker instead of starting one",
    )
    p.add_argument(
        "--port-offset",
        type=int,
        default=int(env("TAPER_PORT_OFFSET", "0")),
        help="added to every service port (8101-8104)",
    )
    p.add_argument("--pager-port", type=int, default=int(env("TAPER_PAGER_PORT", "8199")))
    p.add_argument("--smtp-port", type=int, default=int(env("TAPER_SMTP_PORT", "8025")))
    p.add_argument("--data", default=env("TAPER_DATA_DIR", str(ROOT / "var")))
    p.add_argument(
        "--database-url-template",
        default=env("TAPER_DATABASE_URL_TEMPLATE", ""),
        help="e.g. postgresql+asyncpg://u@h/{service}; default SQLite files in var/",
    )
    p.add_argument(
        "--zipkin-port",
        type=int,
        default=int(env("TAPER_ZIPKIN_PORT", "9411")),
        help="Zipkin (traces, with its UI); 0: none",
    )
    p.add_argument(
        "--prometheus-port",
        type=int,
        default=int(env("TAPER_PROMETHEUS_PORT", "9090")),
        help="Prometheus scraping every service's /metrics; 0: none",
    )
    p.add_argument("--clock-scale", type=float, default=float(env("TAPER_CLOCK_SCALE", "1")))
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument(
        "--cors-origins",
        type=lambda text: [o for o in text.replace(",", " ").split() if o],
        default=env("TAPER_GATEWAY_CORS_ORIGINS", ""),
        help="origins (comma or space separated) whose scripts may call the API through the "
        "gateway, e.g. http://localhost:5173 for a frontend's dev server; default none",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    stack = Stack(_parse(argv))

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Ctrl-C /
    # `kill -INT` must still stop the stack cleanly.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        stack.start()
        stack.run_forever()
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
