"""``make run-cluster``: the production shape on one machine, for the proving grounds.

:class:`LocalCluster` implements :class:`deploy.proving.topology.Topology` with the shape of
``deploy/cluster_shape.py``:

* a 3-broker KRaft cluster (``LocalKafkaCluster``: the Kafka 4.x jars of ``deploy/kafka``);
  the topics are created by the product itself (every service provisions its own topics and
  dead-letter topics on start, ``ensure_topics``) at replication factor 3 / min ISR 2;
* PostgreSQL with ``fsync``, ``synchronous_commit`` and ``full_page_writes`` on (one database per
  service);
* every service as its own process, two replicas of each (one consumer group per service, so the
  partitions are spread over both; the outbox relays share an advisory lock);
* the real nginx gateway with both replicas of a service in its upstream;
* recording sinks for the pager webhook, SMS and SMTP (``pager_sink --record-dir``): every
  request, duplicates included, an fsync'd JSON line in ``sinks/<channel>.jsonl``.

Targets (:meth:`LocalCluster.targets`): ``<service>-1``/``-2`` (group ``<service>``), ``kafka-1..3``
(group ``kafka``), ``postgres``, ``gateway``; the sinks are never faulted. Logs: one
``logs/<target>.log`` per process (Kafka and PostgreSQL: links to their own logs), nginx's under
``logs/gateway/``.

CLI::

    python -m deploy.localstack.cluster [--data DIR] [--gateway-port 8080] [--clock-scale 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from contracts.topics import ALL_TOPICS, THRESHOLD_EXCEEDED
from deploy import cluster_shape as shape
from deploy.localstack.gateway import LocalGateway
from deploy.localstack.kafka import LocalKafkaCluster, admin_client, quiet_kafka_client_logs
from deploy.localstack.postgres import LocalPostgres, run_sync
from deploy.localstack.process import (
    free_ports,
    kill_at_exit,
    port_open,
    signal_group,
    signal_tree,
    spawn,
    terminate,
    tree_pids,
)
from deploy.proving.topology import Channel, Endpoints, Target, Topology
from services.chassis.ops import consumer_lag

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
CHANNELS: tuple[Channel, ...] = ("webhook", "sms", "mail")
# PostgreSQL as in production: a commit is on disk before it is acknowledged (the local test
# server turns these off for speed; a crash test on such a server proves nothing).
DURABLE_POSTGRES = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; TimeoutError naming ``what`` (and the
    last exception) otherwise. Conditions, never fixed sleeps."""
    deadline = time.monotonic() + timeout
    last = "not yet"
    while True:
        try:
            result = check()
            if result:
                return result
        except (KeyError, TypeError, AttributeError):
            raise  # a bug in the check, not a condition that time will change
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s ({last})")
        time.sleep(interval)


@dataclass
class _Process:
    """A process the cluster spawns itself: a service replica or the sinks."""

    name: str
    group: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running():
            return
        with open(self.log_path, "ab") as f:
            f.write(f"\n==== {datetime.now(UTC).isoformat()} starting {self.name}\n".encode())
        self.proc = spawn(self.cmd, self.log_path, env=self.env, cwd=ROOT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(eq=False)  # identity-hashed: registered for the atexit cleanup
class LocalCluster:
    """The cluster of ``deploy/cluster_shape.py`` (module docstring). ``up()`` brings it up;
    ``close()`` (or the context manager) stops everything and removes a temp ``base_dir``."""

    base_dir: Path | None = None
    gateway_port: int | None = None
    clock_scale: float = 1.0
    startup_timeout: float = 300.0
    # One client drives a whole synthetic population through the gateway: the per-client limits
    # of production (20 requests/s) would turn it into 429s. Everything else is the real config.
    gateway_rate_per_second: int = 100_000
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._owns_dir = self.base_dir is None
        self.base = (
            Path(tempfile.mkdtemp(prefix="taper-cluster-"))
            if self.base_dir is None
            else Path(self.base_dir).resolve()
        )
        self.logs = self.base / "logs"
        self.sinks_dir = self.base / "sinks"
        self.spans_file = self.logs / "spans" / "zipkin.jsonl"  # scanned with the logs
        n = len(shape.SERVICES) * shape.REPLICAS_PER_SERVICE
        ports = free_ports(n + 3)
        self._gateway_port = self.gateway_port or ports[n + 2]
        self._sink_http, self._sink_smtp = ports[n], ports[n + 1]
        self.kafka = LocalKafkaCluster(
            shape.BROKERS, self.base / "kafka", startup_timeout=self.startup_timeout
        )
        self.postgres = LocalPostgres(
            base_dir=self.base / "postgres", max_connections=400, extra_config=DURABLE_POSTGRES
        )
        self._replica_ports = {
            (svc, i): ports[k * shape.REPLICAS_PER_SERVICE + i - 1]
            for k, svc in enumerate(shape.SERVICES)
            for i in range(1, shape.REPLICAS_PER_SERVICE + 1)
        }
        self.gateway = LocalGateway(
            self._gateway_port,
            upstreams={
                svc: [self._replica_ports[svc, i] for i in self.replica_indexes]
                for svc in shape.SERVICES
            },
            run_dir=self.base / "gateway",
            rate_per_second=self.gateway_rate_per_second,
            burst=self.gateway_rate_per_second,
            conn_per_client=500,
        )
        self.processes: dict[str, _Process] = {}
        self.endpoints = Endpoints(
            gateway_url=f"http://127.0.0.1:{self._gateway_port}",
            kafka_bootstrap=self.kafka.bootstrap_servers,
            database_urls={s: self.postgres.dsn(s) for s in shape.SERVICES},
            logs_dir=self.logs,
            clock_scale=self.clock_scale,
        )
        kill_at_exit(self)

    @property
    def replica_indexes(self) -> range:
        return range(1, shape.REPLICAS_PER_SERVICE + 1)

    # -- up / close ------------------------------------------------------------------------------
    def up(self) -> LocalCluster:
        """Start everything and wait until it all answers (``start(target)`` is the fault API)."""
        t0 = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres and nginx users must traverse it
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sinks_dir.mkdir(parents=True, exist_ok=True)
        self.kafka.start()
        for i, node in enumerate(self.kafka.nodes, start=1):
            self._link(f"kafka-{i}.log", node.stdout_log)
        self.postgres.start()
        self._link("postgres.log", self.postgres.log_path)
        for svc in shape.SERVICES:
            self.postgres.create_database(svc, exist_ok=True)
        self._make_processes()
        self.processes["sinks"].start()
        # Replica 1 of every service first: they provision the topics and migrate the schema
        # (both idempotent and safe in parallel, but 8 processes importing at once on a small
        # machine only make each other slower).
        for i in self.replica_indexes:
            for svc in shape.SERVICES:
                self.processes[f"{svc}-{i}"].start()
            for svc in shape.SERVICES:
                self._wait_ready(self.processes[f"{svc}-{i}"], self.startup_timeout)
        self.gateway.start()
        (self.logs / "gateway").unlink(missing_ok=True)
        (self.logs / "gateway").symlink_to(self.gateway.run_dir / "logs")
        self.wait_healthy(self.startup_timeout)
        log.info("cluster up in %.0fs", time.monotonic() - t0)
        return self

    def _link(self, name: str, target: Path) -> None:
        link = self.logs / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)

    def _make_processes(self) -> None:
        anchor = datetime.now(UTC).isoformat()  # one "now" for every process, kept on restarts
        common = {
            **os.environ,
            "TAPER_ENV": "development",
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "KAFKA_PROVISION_TOPICS": "true",
            "KAFKA_REPLICATION_FACTOR": str(shape.REPLICATION_FACTOR),
            "KAFKA_MIN_INSYNC_REPLICAS": str(shape.MIN_INSYNC_REPLICAS),
            "TAPER_CLOCK_SCALE": str(self.clock_scale),
            "TAPER_CLOCK_ANCHOR": anchor,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.processes["sinks"] = _Process(
            name="sinks",
            group="sinks",
            cmd=[
                sys.executable,
                "-m",
                "deploy.localstack.pager_sink",
                "--port",
                str(self._sink_http),
                "--smtp-port",
                str(self._sink_smtp),
                "--record-dir",
                str(self.sinks_dir),
                # Every span the services export, where the proving grounds' PHI scan reads.
                "--spans-file",
                str(self.spans_file),
            ],
            env=common,
            log_path=self.logs / "sinks.log",
            port=self._sink_http,
        )
        sink = f"http://127.0.0.1:{self._sink_http}"
        for svc in shape.SERVICES:
            prefix = svc.upper() + "_"
            for i in self.replica_indexes:
                port = self._replica_ports[svc, i]
                env = {
                    **common,
                    f"{prefix}HTTP_PORT": str(port),
                    f"{prefix}DATABASE_URL": self.postgres.dsn(svc),
                    "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{sink}/api/v2/spans",
                }
                if svc == "notifications":
                    env |= {
                        "NOTIFICATIONS_PAGE_WEBHOOK_URL": f"{sink}/pages",
                        "NOTIFICATIONS_SMS_BASE_URL": f"{sink}/sms",
                        "NOTIFICATIONS_SMTP_PORT": str(self._sink_smtp),
                        "NOTIFICATIONS_PUBLIC_BASE_URL": self.endpoints.gateway_url,
                    }
                name = f"{svc}-{i}"
                self.processes[name] = _Process(
                    name=name,
                    group=svc,
                    cmd=[sys.executable, "-m", f"services.{svc}.entrypoints.main"],
                    env=env,
                    log_path=self.logs / f"{name}.log",
                    port=port,
                )

    def close(self) -> None:
        """Stop everything (services first, so they leave their consumer groups cleanly)."""
        self.gateway.stop()
        procs = [p.proc for p in self.processes.values() if p.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                signal_group(proc, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                signal_group(proc, signal.SIGTERM)
        for proc in procs:
            terminate(proc, 20)
        for node in self.kafka.nodes:
            if node.proc is not None:
                signal_group(node.proc, signal.SIGCONT)
        self.kafka.stop()
        if self.postgres.proc is not None:
            signal_group(self.postgres.proc, signal.SIGCONT)
        self.postgres.stop()
        if self._owns_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def kill_for_exit(self) -> None:
        for p in self.processes.values():
            if p.proc is not None:
                signal_group(p.proc, signal.SIGKILL)

    def __enter__(self) -> LocalCluster:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Topology --------------------------------------------------------------------------------
    def targets(self) -> list[Target]:
        out = [
            Target(name, p.group, p.proc.pid if p.running() and p.proc else None)
            for name, p in self.processes.items()
            if name != "sinks"
        ]
        for i, node in enumerate(self.kafka.nodes, start=1):
            pid = node.proc.pid if node.is_running() and node.proc else None
            out.append(Target(f"kafka-{i}", "kafka", pid))
        pg = self.postgres.proc
        out.append(
            Target("postgres", "postgres", pg.pid if self.postgres.is_running() and pg else None)
        )
        gw = self.gateway.proc
        out.append(
            Target("gateway", "gateway", gw.pid if self.gateway.is_running() and gw else None)
        )
        return out

    def _popen(self, target: str) -> subprocess.Popen[bytes] | None:
        if target in self.processes:
            return self.processes[target].proc
        if target.startswith("kafka-"):
            return self.kafka.nodes[self._kafka_index(target)].proc
        if target == "postgres":
            return self.postgres.proc
        if target == "gateway":
            return self.gateway.proc
        raise KeyError(f"unknown target {target!r}")

    def _kafka_index(self, target: str) -> int:
        i = int(target.removeprefix("kafka-")) - 1
        if not 0 <= i < len(self.kafka.nodes):
            raise KeyError(f"unknown target {target!r}")
        return i

    def kill(self, target: str) -> None:
        """SIGKILL the target and everything it started (PostgreSQL: the postmaster and its
        backends, which leave its process group; nginx: master and workers); it stays down until
        :meth:`start`."""
        proc = self._popen(target)
        if proc is None:
            return
        signal_tree(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)

    def stop(self, target: str) -> None:
        """SIGSTOP the target and everything it started: a PostgreSQL whose backends went on
        answering would not hang."""
        proc = self._popen(target)
        if proc is not None and proc.poll() is None:
            signal_tree(proc.pid, signal.SIGSTOP)

    def cont(self, target: str) -> None:
        proc = self._popen(target)
        if proc is not None and proc.poll() is None:
            signal_tree(proc.pid, signal.SIGCONT)

    def start(self, target: str) -> None:
        """Start a killed target again, same ports, settings and data. Returns without waiting
        for it to answer (PostgreSQL excepted: its start includes crash recovery); use
        :meth:`wait_healthy`."""
        if target in self.processes:
            self.processes[target].start()
        elif target.startswith("kafka-"):
            self.kafka.start_node(self._kafka_index(target), wait=False)
        elif target == "postgres":
            self.postgres.start()
        elif target == "gateway":
            self.gateway.start()
        else:
            raise KeyError(f"unknown target {target!r}")

    def restart(self, target: str) -> None:
        """A clean restart: SIGTERM, wait for the exit, start again."""
        if target in self.processes and (proc := self.processes[target].proc) is not None:
            terminate(proc, 30)
        elif target.startswith("kafka-"):
            self.kafka.stop_node(self._kafka_index(target))
        elif target == "postgres":
            self.postgres.stop()
        elif target == "gateway":
            self.gateway.stop()
        self.start(target)

    def wait_healthy(self, timeout: float) -> None:
        """Every process runs and answers: the three brokers registered with every partition of
        the product's topics fully in sync, PostgreSQL accepting queries, every replica ready
        (database and broker), the gateway routing to each service, the sinks listening."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        for name, p in self.processes.items():
            wait_for(f"{name} running", p.running, left())
        wait_for(
            "every Kafka node running",
            lambda: all(n.is_running() for n in self.kafka.nodes),
            left(),
        )
        wait_for("postgres running", self.postgres.is_running, left())
        wait_for("gateway running", self.gateway.is_running, left())
        wait_for("brokers in sync", self._kafka_in_sync, left(), interval=1.0)
        wait_for("postgres answers", lambda: run_sync(self.postgres._probe) or True, left())
        wait_for("sinks listening", lambda: port_open(self._sink_http), left())
        for p in self.processes.values():
            if p.name != "sinks":
                self._wait_ready(p, left())
        with httpx.Client(timeout=5.0) as client:
            for svc in shape.SERVICES:
                url = f"{self.endpoints.gateway_url}/api/{svc.replace('_', '-')}/health"

                def routed(u: str = url) -> bool:
                    return client.get(u).status_code == 200

                wait_for(f"gateway -> {svc}", routed, left())

    def _wait_ready(self, p: _Process, timeout: float) -> None:
        url = f"http://127.0.0.1:{p.port}/api/{p.group.replace('_', '-')}/ready"

        def ready() -> bool:
            if not p.running():
                rc = p.proc.returncode if p.proc else None
                raise RuntimeError(f"{p.name} is not running (rc={rc}, log {p.log_path})")
            return httpx.get(url, timeout=3.0).status_code == 200

        wait_for(f"{p.name} ready", ready, timeout, interval=0.5)

    def _kafka_in_sync(self) -> bool:
        with self._admin() as admin:
            brokers = [b for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")]
            if len(brokers) < shape.BROKERS:
                return False
            names = [t.name for t in ALL_TOPICS] + [t.dlq for t in ALL_TOPICS]
            for topic in admin.describe_topics(names):
                if topic["error_code"] != 0:
                    return False
                for part in topic["partitions"]:
                    if len(part["isr_nodes"]) < len(part["replica_nodes"]):
                        return False
                    if part["leader_id"] < 0:
                        return False
        return True

    @contextlib.contextmanager
    def _admin(self) -> Iterator[Any]:
        live = [n.bootstrap for n in self.kafka.nodes if n.is_running()]
        with quiet_kafka_client_logs():
            admin = admin_client(live, timeout_ms=5000)
            try:
                yield admin
            finally:
                admin.close()

    def kafka_roles(self) -> dict[str, str]:
        """The active controller (the KRaft quorum leader, DescribeQuorum) and the leader of
        partition 0 of the dead-letter topic of ``ThresholdExceeded`` (the pages' topic)."""
        with self._admin() as admin:
            quorum = admin.describe_metadata_quorum()
            controller = _quorum_leader(quorum)
            dlq = admin.describe_topics([THRESHOLD_EXCEEDED.dlq])[0]
            leader = next(p["leader_id"] for p in dlq["partitions"] if p["partition_index"] == 0)
        return {"controller": f"kafka-{controller}", "dlq_leader": f"kafka-{leader}"}

    def sink_requests(self, channel: Channel) -> list[dict[str, Any]]:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; one of {CHANNELS}")
        path = self.sinks_dir / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- inspection (tests, the harness) ---------------------------------------------------------
    def group_assignment(self, service: str) -> dict[str, list[tuple[str, int]]]:
        """The service's consumer group now: member id -> its (topic, partition) list."""
        with self._admin() as admin:
            group = admin.describe_groups([service])[service]
        out: dict[str, list[tuple[str, int]]] = {}
        for member in group.get("members", []):
            assignment = member.get("member_assignment") or {}
            parts = [
                (topic["topic"], p)
                for topic in assignment.get("assigned_partitions", [])
                for p in topic["partitions"]
            ]
            out[member["member_id"]] = sorted(parts)
        return out

    def relay_lock_holders(self, service: str) -> int:
        """How many backends hold the service's outbox-relay advisory lock right now (0 or 1:
        the relay takes it per batch, transaction-scoped)."""
        key = zlib.crc32(f"outbox:{service}".encode())

        async def count() -> int:
            conn = await asyncpg.connect(self.postgres.asyncpg_dsn(service), timeout=5)
            try:
                # a bigint key is stored as classid (high 32 bits) and objid (low 32 bits)
                n = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
                    key >> 32,
                    key & 0xFFFFFFFF,
                )
                return int(n)
            finally:
                await conn.close()

        return run_sync(count)

    def pending_outbox(self, service: str) -> int:
        """Outbox rows of ``service`` not yet published."""

        async def count() -> int:
            conn = await asyncpg.connect(self.postgres.asyncpg_dsn(service), timeout=5)
            try:
                return int(
                    await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                )
            finally:
                await conn.close()

        return run_sync(count)

    def consumer_lag(self, service: str) -> int:
        """Messages the service's consumer group has not committed yet, over all its partitions."""
        with quiet_kafka_client_logs():
            return sum(consumer_lag(self.kafka.bootstrap_servers, service).values())

    def quiescent(self) -> bool:
        """Nothing in flight: every outbox published, every consumer group caught up."""
        return all(
            self.pending_outbox(s) == 0 and self.consumer_lag(s) == 0 for s in shape.SERVICES
        )

    def resource_usage(self) -> dict[str, dict[str, float]]:
        """RSS (MiB) and CPU seconds used so far, per target and for the sinks (process trees)."""
        out: dict[str, dict[str, float]] = {}
        pids = {t.name: t.pid for t in self.targets() if t.pid}
        if (sinks := self.processes["sinks"]).running() and sinks.proc:
            pids["sinks"] = sinks.proc.pid
        tick = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        for name, pgid in pids.items():
            rss = cpu = 0.0
            for pid in tree_pids(pgid):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
                    rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            out[name] = {"rss_mib": rss / 2**20, "cpu_s": cpu}
        return out


def as_topology(cluster: LocalCluster) -> Topology:
    """What the proving grounds drive; mypy checks here that LocalCluster implements it."""
    return cluster


def _quorum_leader(quorum: Any) -> int:
    """leader_id of ``__cluster_metadata`` partition 0 in a DescribeQuorum answer."""
    for topic in quorum.get("topics", []):
        for part in topic.get("partitions", []):
            if part.get("partition_index", 0) == 0 and part.get("leader_id", -1) >= 0:
                return int(part["leader_id"])
    raise RuntimeError("the KRaft quorum has no leader")


def idle_report(cluster: LocalCluster, seconds: float) -> str:
    """A Markdown table: RSS now and CPU share over ``seconds`` of idling, per target group."""
    before, t0 = cluster.resource_usage(), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:  # idle on purpose: this is the measurement window
        time.sleep(min(1.0, deadline - time.monotonic()))
    after, elapsed = cluster.resource_usage(), time.monotonic() - t0
    groups: dict[str, list[float]] = {}
    for name, usage in after.items():
        group = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
        cpu = usage["cpu_s"] - before.get(name, {"cpu_s": usage["cpu_s"]})["cpu_s"]
        row = groups.setdefault(group, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += usage["rss_mib"]
        row[2] += cpu / elapsed * 100
    lines = [
        f"Idle for {elapsed:.0f} s after start ({os.cpu_count()} cores):",
        "",
        "| group | processes | RSS MiB | CPU % of one core |",
        "|---|---:|---:|---:|",
    ]
    for group, (n, rss, cpu) in sorted(groups.items()):
        lines.append(f"| {group} | {n:.0f} | {rss:.0f} | {cpu:.1f} |")
    n, rss, cpu = (sum(r[i] for r in groups.values()) for i in range(3))
    lines.append(f"| **total** | {n:.0f} | {rss:.0f} | {cpu:.1f} |")
    return "\n".join(lines)


MARKER = ".taper-cluster"


def _fresh_dir(path: Path) -> None:
    """Each run starts empty (new ports, a new Kafka cluster id): remove a previous run's
    directory, but only one this module made (it carries the marker file)."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise SystemExit(
                f"{path} is not empty and not a previous cluster run's; not touching it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by deploy/localstack/cluster.py; removed on the next run\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.localstack.cluster")
    parser.add_argument("--data", type=Path, default=None, help="default: a temp dir, removed")
    parser.add_argument(
        "--gateway-port", type=int, default=int(os.environ.get("TAPER_GATEWAY_PORT", "8080"))
    )
    parser.add_argument(
        "--clock-scale", type=float, default=float(os.environ.get("TAPER_CLOCK_SCALE", "1"))
    )
    parser.add_argument(
        "--measure-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="start, measure RSS and CPU of every process over SECONDS of idling, print, stop",
    )
    args = parser.parse_args(argv)
    if args.data is not None:
        _fresh_dir(args.data)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cluster = LocalCluster(args.data, args.gateway_port, args.clock_scale)

    def _terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        t0 = time.monotonic()
        cluster.up()
        e = cluster.endpoints
        print(f"\nThe taper cluster is up ({time.monotonic() - t0:.0f}s):", flush=True)
        print(f"  gateway   {e.gateway_url}  (/api/<service>/docs)")
        print(f"  kafka     {e.kafka_bootstrap}  roles: {cluster.kafka_roles()}")
        print(f"  postgres  {cluster.postgres.asyncpg_dsn()}")
        print(f"  sinks     {cluster.sinks_dir}/<webhook|sms|mail>.jsonl")
        print(f"  logs      {e.logs_dir}")
        for t in cluster.targets():
            print(f"  {t.name:<18} pid {t.pid}")
        if args.measure_idle > 0:
            print(idle_report(cluster, args.measure_idle), flush=True)
            return 0
        print("READY  (Ctrl-C stops everything)", flush=True)
        while True:
            for p in cluster.processes.values():
                if not p.running():
                    print(f"{p.name} exited (log {p.log_path})", file=sys.stderr, flush=True)
                    return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
