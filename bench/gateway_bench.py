"""API gateway and HTTP chassis: what nginx, its TLS listener and the services' chassis add to a
request, against a bare app on the same server setup, measured in the same run.

``python -m bench.gateway_bench`` serves the four services' FastAPI apps on uvicorn exactly as the
gateway tests do (``tests/support/served.py``: SQLite, migrated, lifespan off, no
broker, one background thread and event loop), plus, on the same loop with the same uvicorn
settings, a bare Starlette app (the baseline), a bare FastAPI app with the chassis' health handler
and nothing else, and a raw ASGI callable (both for attribution). In front of them the real
gateway (``deploy.localstack.gateway.LocalGateway``: the rendered ``deploy/gateway/*.template``,
rate limit raised to 100000/s so it never answers 429), with its TLS listener on a throwaway
certificate for 127.0.0.1 (``tests.support.pki.make_gateway_pki``). The HTTP client
(``httpx.AsyncClient``, HTTP/1.1, keep-alive, one connection per concurrent worker) runs in a
second process (this module with ``--driver``), so it shares no interpreter lock or event loop
with the servers.

Cells (every one at each concurrency C of ``--concurrency``, default 1 and 16):

1. ``GET /api/monitoring/health`` (no database, no token): raw ASGI, bare Starlette (baseline),
   bare FastAPI, monitoring's chassis app direct, the same through nginx (plain HTTP) and through
   nginx's TLS listener;
2. ``GET /api/monitoring/patients/{id}/symptom-reports`` as a clinician with the patient on the
   panel (token check, audit row inserted and committed, the reports read), direct and through
   nginx.

Each cell: ``--warmup`` untimed requests on its own client, then ``--requests`` timed ones split
into ``--rounds`` rounds; within a group (request x C) the variants take turns round by round, the
order rotating, and every round starts with 2 x C untimed requests (uvicorn closes keep-alive
connections idle for 5 s). Every response is checked (200, the expected body byte for byte); for
the read, one audit row per request; through nginx, one access-log line per request. Per cell:
p50 / p99 latency, requests/s, CPU per request of the client, the servers' process, nginx and
everything else on the machine, and the connections to the service closed meanwhile.

Writes ``bench/results/gateway-<date>.md`` (``--output``), keeping an existing hand-written
Interpretation. Reported, never asserted: not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.harness.logs import service_logging
from bench.harness.measure import Sample, load, pct, run_workers
from bench.harness.payloads import CIWA_ITEMS
from bench.machine import machine_info
from bench.report import ROOT, git_state, write_results
from deploy.localstack.gateway import LocalGateway, TlsFiles, find_nginx, nginx_build_info
from services.chassis.auth import Role, issue_dev_token
from tests.support.pki import make_gateway_pki
from tests.support.served import ServedApps

HEALTH_PATH = "/api/monitoring/health"
HEALTH = {"status": "ok", "service": "monitoring"}  # what the chassis' /health answers
LIBRARIES = (
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "starlette",
    "fastapi",
    "httpx",
    "httpcore",
    "sqlalchemy",
    "aiosqlite",
    "pyjwt",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-fastapi",
)


# --------------------------------------------------------------------------------------------
# the bare apps (same uvicorn settings and loop as ServedApps)
# --------------------------------------------------------------------------------------------

_RAW_BODY = json.dumps(HEALTH, separators=(",", ":")).encode()


async def raw_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """The floor: a constant answer, no routing, no request or response objects."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_RAW_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _RAW_BODY})


async def _starlette_health(_: Request) -> JSONResponse:
    return JSONResponse(HEALTH)


def bare_starlette() -> Starlette:
    """The baseline: Starlette routing to one endpoint returning the same JSON; no middleware."""
    return Starlette(routes=[Route(HEALTH_PATH, _starlette_health)])


def bare_fastapi() -> FastAPI:
    """FastAPI with the chassis' health handler (``create_app``'s) and nothing else."""
    app = FastAPI()

    @app.get(HEALTH_PATH)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": "monitoring"}

    return app


class ExtraServers:
    """Apps served on ServedApps' loop with ServedApps' uvicorn settings."""

    def __init__(self, apps: ServedApps) -> None:
        self.apps = apps
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    def serve(self, app: ASGIApp) -> int:
        async def start() -> int:
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
            )
            server = uvicorn.Server(config)
            self._tasks.append(asyncio.get_running_loop().create_task(server.serve()))
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, no event
                await asyncio.sleep(0.01)
            self._servers.append(server)
            return int(server.servers[0].sockets[0].getsockname()[1])

        return int(self.apps.call(start()))

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.should_exit = True
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self.apps.call(stop())


# --------------------------------------------------------------------------------------------
# the driver process (the HTTP client)
# --------------------------------------------------------------------------------------------


async def _run(clients: list[httpx.AsyncClient], cmd: dict[str, Any]) -> dict[str, Any]:
    n, path, prefix = int(cmd["n"]), str(cmd["path"]), str(cmd["id_prefix"])
    expect = str(cmd["expect"]).encode()
    latencies = [0] * n
    bad: list[str] = []
    last: list[httpx.Response] = []

    async def one(w: int, i: int) -> None:
        t0 = time.perf_counter_ns()
        r = await clients[w].get(path, headers={"X-Request-ID": f"{prefix}{i}"})
        latencies[i] = time.perf_counter_ns() - t0
        if r.status_code != 200 or r.content != expect:
            bad.append(f"{r.status_code} {r.content[:200]!r}")
        if i == n - 1:
            last.append(r)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await run_workers(n, len(clients), one)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    reply: dict[str, Any] = {
        "lat_ns": latencies,
        "wall_s": wall,
        "cpu_s": cpu,
        "bad": len(bad),
        "first_bad": bad[0] if bad else None,
    }
    if last:
        reply["http_version"] = last[0].http_version
        stream = last[0].extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        if ssl_object is not None:
            reply["tls"] = f"{ssl_object.version()} {ssl_object.cipher()[0]}"
    return reply


async def driver_main() -> None:
    """Serve commands, one JSON line each on stdin, answer one JSON line each on stdout."""
    out, sys.stdout = sys.stdout, sys.stderr  # nothing else may write to the answer pipe
    clients: dict[str, list[httpx.AsyncClient]] = {}
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):  # EOF: the parent is gone
            cmd = json.loads(line)
            try:
                if cmd["op"] == "open":
                    verify: ssl.SSLContext | bool = (
                        ssl.create_default_context(cafile=cmd["ca"]) if cmd["ca"] else True
                    )
                    # one client per worker, one keep-alive connection each (one shared pool of C
                    # connections costs the client about twice the CPU per request at C=16)
                    clients[cmd["name"]] = [
                        httpx.AsyncClient(
                            base_url=cmd["base_url"],
                            headers=cmd["headers"],
                            verify=verify,
                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                            timeout=30.0,
                            trust_env=False,  # no proxy from the environment
                        )
                        for _ in range(int(cmd["connections"]))
                    ]
                    reply: dict[str, Any] = {}
                elif cmd["op"] == "run":
                    reply = await _run(clients[cmd["name"]], cmd)
                elif cmd["op"] == "close":
                    for client in clients.pop(cmd["name"]):
                        await client.aclose()
                    reply = {}
                else:
                    break
            except Exception as exc:
                reply = {"error": repr(exc)}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        for workers in clients.values():
            for client in workers:
                await client.aclose()


class Driver:
    """The parent's handle on the driver process (synchronous: the parent's main thread only
    waits for it; the servers run in ServedApps' thread)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gateway_bench", "--driver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self.pid = self.proc.pid

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the driver process exited ({self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"driver: {reply['error']}")
        return reply

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


def time_wait(port: int) -> set[tuple[int, int]]:
    """(local, remote) ports of the TIME_WAIT sockets with ``port`` at one end: each is a TCP
    connection closed in the last minute (by whichever end holds it)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] != "06":  # TCP_TIME_WAIT
            continue
        local, remote = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
        if port in (local, remote):
            found.add((local, remote))
    return found


def nginx_pids(master: int) -> list[int]:
    """nginx's master and its children (the worker; single-threaded processes)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *(int(p) for p in children)]


def run_time_s(pids: list[int]) -> float:
    """CPU time of single-threaded processes, in ns resolution (``/proc/<pid>/schedstat``)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


@dataclass
class Snap:
    """CPU counters around a round: this process (the servers), nginx, the machine."""

    sample: Sample  # wall, this process's CPU (all threads), the machine's busy time
    kernel_s: float  # this process's system time
    nginx_s: float

    @classmethod
    def take(cls, nginx: list[int]) -> Snap:
        return cls(Sample(), os.times().system, run_time_s(nginx))


@dataclass(frozen=True)
class Variant:
    request: str  # "health" | "read"
    key: str
    label: str
    port: int  # where the client connects
    tls: bool = False
    via_gateway: bool = False

    @property
    def name(self) -> str:
        return f"{self.request}:{self.key}"


@dataclass
class Round:
    n: int
    latencies_ns: list[int]
    wall_s: float
    client_s: float
    app_s: float
    app_kernel_s: float
    nginx_s: float
    others_s: float
    closed_by_caller: int  # connections to monitoring's uvicorn closed by nginx or the client
    closed_by_service: int  # ... closed by uvicorn (idle keep-alive connections after 5 s)
    load: str


@dataclass
class Cell:
    variant: Variant
    concurrency: int
    rounds: list[Round] = field(default_factory=list)
    http_version: str = "?"
    tls: str = ""

    @property
    def n(self) -> int:
        return sum(r.n for r in self.rounds)

    @property
    def latencies_ms(self) -> list[float]:
        return [ns / 1e6 for r in self.rounds for ns in r.latencies_ns]

    def p(self, q: float) -> float:
        return pct(self.latencies_ms, q)

    @property
    def rate(self) -> float:
        return self.n / sum(r.wall_s for r in self.rounds)

    def round_p50s(self) -> list[float]:
        return [pct([ns / 1e6 for ns in r.latencies_ns], 50) for r in self.rounds]

    def per_request_us(self, attr: str) -> float:
        return 1e6 * sum(getattr(r, attr) for r in self.rounds) / self.n

    def closed(self) -> str:
        by_caller = sum(r.closed_by_caller for r in self.rounds)
        by_service = sum(r.closed_by_service for r in self.rounds)
        return f"{by_caller} / {by_service}"


@dataclass
class Options:
    requests: int
    warmup: int
    rounds: int
    concurrency: list[int]
    reports: int


@dataclass
class Results:
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    loads: dict[str, str] = field(default_factory=dict)


class Bench:
    def __init__(self, opts: Options, results: Results, workdir: Path) -> None:
        self.opts = opts
        self.results = results
        self.workdir = workdir

    # --- setup --------------------------------------------------------------------------------
    def run(self) -> None:
        apps = ServedApps(self.workdir / "db")
        extra = ExtraServers(apps)
        gateway: LocalGateway | None = None
        driver: Driver | None = None
        try:
            raw_port = extra.serve(raw_asgi)
            starlette_port = extra.serve(bare_starlette())
            fastapi_port = extra.serve(bare_fastapi())
            pki = make_gateway_pki(self.workdir)
            gateway = LocalGateway(
                upstreams=apps.ports,
                rate_per_second=100_000,
                burst=100_000,
                tls=TlsFiles(pki.chain, pki.key),
            ).start()
            assert gateway.proc is not None and gateway.tls_port is not None
            driver = Driver()
            self.apps, self.gateway, self.driver = apps, gateway, driver
            self.ca = str(pki.ca_cert)
            self.monitoring_port = apps.ports["monitoring"]
            self.nginx = nginx_pids(gateway.proc.pid)
            conf = gateway.conf_path.read_text()
            found = re.search(r"upstream monitoring\s*\{[^}]*keepalive (\d+);", conf)
            self.results.info["keepalive"] = found.group(1) if found else "?"
            mon, gw, tls = self.monitoring_port, gateway.port, gateway.tls_port
            health = [
                Variant("health", "asgi", "raw ASGI callable (reference)", raw_port),
                Variant("health", "starlette", "bare Starlette app (baseline)", starlette_port),
                Variant("health", "fastapi", "bare FastAPI app (reference)", fastapi_port),
                Variant("health", "direct", "monitoring (chassis), direct", mon),
                Variant("health", "gateway", "monitoring via nginx", gw, via_gateway=True),
                Variant("health", "tls", "monitoring via nginx TLS", tls, True, True),
            ]
            read = [
                Variant("read", "direct", "monitoring (chassis), direct", mon),
                Variant("read", "gateway", "monitoring via nginx", gw, via_gateway=True),
            ]
            self.headers, self.expect = self.prepare(health, read)
            for c in self.opts.concurrency:
                self.group(health, c)
            for c in self.opts.concurrency:
                self.group(read, c)
        finally:
            if driver is not None:
                driver.stop()
            if gateway is not None:
                gateway.stop()
            extra.close()
            apps.close()

    def url(self, v: Variant) -> str:
        return f"{'https' if v.tls else 'http'}://127.0.0.1:{v.port}"

    def prepare(
        self, health: list[Variant], read: list[Variant]
    ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """Seed the patient's reports; the clinician's token; the expected body of every variant
        (each checked against its baseline's once here, then on every timed response)."""
        settings = self.apps.runtimes["monitoring"].settings
        self.patient = uuid.uuid4()
        self.read_path = f"/api/monitoring/patients/{self.patient}/symptom-reports"
        patient_token = issue_dev_token(
            settings, subject="p-bench", role=Role.PATIENT, patient_id=self.patient
        )
        clinician = issue_dev_token(
            settings, subject="c-1", role=Role.CLINICIAN, panel=[self.patient]
        )
        direct = f"http://127.0.0.1:{self.monitoring_port}"
        with httpx.Client(base_url=direct, trust_env=False, timeout=30) as client:
            for k in range(self.opts.reports):
                answers = {item: (k + j) % 3 for j, item in enumerate(CIWA_ITEMS)}
                r = client.post(
                    self.read_path,
                    json={"instrument": "ciwa-b", "oriented": True, "answers": answers},
                    headers={"Authorization": f"Bearer {patient_token}"},
                )
                assert r.status_code == 201, r.text
        headers: dict[str, dict[str, str]] = {v.name: {} for v in health}
        headers |= {v.name: {"Authorization": f"Bearer {clinician}"} for v in read}
        expect: dict[str, str] = {}
        ctx = ssl.create_default_context(cafile=self.ca)
        for variants, path in ((health, HEALTH_PATH), (read, self.read_path)):
            for v in variants:
                with httpx.Client(verify=ctx, trust_env=False, timeout=30) as client:
                    r = client.get(self.url(v) + path, headers=headers[v.name])
                assert r.status_code == 200, (v, r.status_code, r.text)
                expect[v.name] = r.text
            assert len({expect[v.name] for v in variants}) == 1, "variants answer differently"
        body = json.loads(expect[read[0].name])
        assert len(body) == self.opts.reports, body
        self.results.info["read body"] = (
            f"{len(expect[read[0].name].encode())} bytes, {len(body)} reports"
        )
        self.results.info["health body"] = f"{len(expect[health[0].name].encode())} bytes"
        return headers, expect

    # --- measuring ----------------------------------------------------------------------------
    def group(self, variants: list[Variant], c: int) -> None:
        request = variants[0].request
        ld = load()
        self.results.loads[f"{request} C={c}"] = ld
        print(f"\n== {request}, C={c}  (load average {ld})", flush=True)
        for v in variants:
            self.driver.call(
                op="open",
                name=v.name,
                base_url=self.url(v),
                ca=self.ca if v.tls else None,
                connections=c,
                headers=self.headers[v.name],
            )
            self.results.cells[(v.name, c)] = Cell(v, c)
            self.send(v, c, self.opts.warmup, "w-")
        per = [self.opts.requests // self.opts.rounds] * self.opts.rounds
        per[0] += self.opts.requests - sum(per)
        for k, n in enumerate(per):
            shift = k % len(variants)
            for v in variants[shift:] + variants[:shift]:
                self.send(v, c, 2 * c, f"r{k}-")  # every keep-alive connection open
                self.timed(v, c, k, n)
        for v in variants:
            self.driver.call(op="close", name=v.name)
            cell = self.results.cells[(v.name, c)]
            print(
                f"  {v.name:18} C={c:<3} {cell.n:>6} in {sum(r.wall_s for r in cell.rounds):6.2f}"
                f" s {cell.rate:8.0f}/s  p50 {cell.p(50):7.3f} ms  p99 {cell.p(99):7.3f} ms  "
                f"client {cell.per_request_us('client_s'):5.0f} us  app "
                f"{cell.per_request_us('app_s'):5.0f} us  nginx "
                f"{cell.per_request_us('nginx_s'):4.0f} us  others "
                f"{cell.per_request_us('others_s'):4.0f} us per request",
                flush=True,
            )

    def send(self, v: Variant, c: int, n: int, prefix: str) -> dict[str, Any]:
        reply = self.driver.call(
            op="run",
            name=v.name,
            path=HEALTH_PATH if v.request == "health" else self.read_path,
            n=n,
            expect=self.expect[v.name],
            id_prefix=f"bench-{v.request}-{v.key}-c{c}-{prefix}",
        )
        if reply["bad"]:
            raise RuntimeError(f"{v.name} C={c}: {reply['bad']} bad answers: {reply['first_bad']}")
        return reply

    def timed(self, v: Variant, c: int, k: int, n: int) -> None:
        ld = load()
        audit0 = self.audit_rows() if v.request == "read" else 0
        log0 = self.access_log_lines()
        port = self.monitoring_port
        on_service = v.port in (port, self.gateway.port, self.gateway.tls_port)
        closed0 = time_wait(port) if on_service else set()
        a = Snap.take(self.nginx)
        reply = self.send(v, c, n, f"t{k}-")
        b = Snap.take(self.nginx)
        closed = time_wait(port) - closed0 if on_service else set()
        # every request did the work it stands for
        if v.request == "read":
            added = self.audit_rows() - audit0
            if added != n:
                raise RuntimeError(f"{v.name} C={c}: {added} audit rows for {n} reads")
        logged = self.access_log_lines() - log0
        if logged != (n if v.via_gateway else 0):
            raise RuntimeError(f"{v.name} C={c}: {logged} access-log lines for {n} requests")
        app, nginx = b.sample.cpu - a.sample.cpu, b.nginx_s - a.nginx_s
        ours = app + nginx + reply["cpu_s"]
        cell = self.results.cells[(v.name, c)]
        cell.http_version = reply.get("http_version", "?")
        cell.tls = reply.get("tls", "")
        cell.rounds.append(
            Round(
                n=n,
                latencies_ns=reply["lat_ns"],
                wall_s=reply["wall_s"],
                client_s=reply["cpu_s"],
                app_s=app,
                app_kernel_s=b.kernel_s - a.kernel_s,
                nginx_s=nginx,
                others_s=max(0.0, (b.sample.busy - a.sample.busy) - ours),
                closed_by_caller=sum(1 for _, remote in closed if remote == port),
                closed_by_service=sum(1 for local, _ in closed if local == port),
                load=ld,
            )
        )

    def audit_rows(self) -> int:
        runtime = self.apps.runtimes["monitoring"]
        audit = runtime.metadata.tables["audit_log"]
        q = sa.select(sa.func.count()).where(
            audit.c.patient_id == self.patient,
            audit.c.action == "read",
            audit.c.outcome == "allowed",
        )

        async def count() -> int:
            async with runtime.engine.connect() as conn:
                return int((await conn.execute(q)).scalar_one())

        return int(self.apps.call(count()))

    def access_log_lines(self) -> int:
        try:
            return self.gateway.access_log.read_bytes().count(b"\n")
        except OSError:
            return 0


# --------------------------------------------------------------------------------------------
# the results file
# --------------------------------------------------------------------------------------------

RATIOS: list[tuple[str, str, str, str]] = [
    # (request, measured, against, what the ratio shows)
    ("health", "direct", "starlette", "chassis /health / bare Starlette app"),
    ("health", "fastapi", "starlette", "bare FastAPI / bare Starlette (attribution)"),
    ("health", "direct", "fastapi", "chassis /health / bare FastAPI (the chassis' middleware)"),
    ("health", "asgi", "starlette", "raw ASGI / bare Starlette (attribution)"),
    ("health", "gateway", "direct", "/health via nginx / direct"),
    ("health", "tls", "direct", "/health via nginx TLS / direct"),
    ("health", "tls", "gateway", "/health via nginx TLS / via nginx plain"),
    ("read", "gateway", "direct", "audited read via nginx / direct"),
]


def _nginx_versions() -> tuple[str, str]:
    info = nginx_build_info(find_nginx())
    version = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "version" in ln), "?"
    )
    openssl = next((ln.strip() for ln in info.splitlines() if "OpenSSL" in ln), "?")
    return version, openssl


def results_table(results: Results, opts: Options) -> list[str]:
    out = [
        "| request | variant | C | n | p50 ms | p99 ms | requests/s | p50 ms per round "
        "(min-max) | client CPU us/req | servers' process CPU us/req (of it kernel) | "
        "nginx CPU us/req | others' CPU us/req | connections to the service closed by caller "
        "/ by service |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for request in ("health", "read"):
        for c in opts.concurrency:
            for cell in results.cells.values():
                if cell.variant.request != request or cell.concurrency != c:
                    continue
                p50s = cell.round_p50s()
                closed = (
                    "n/a" if cell.variant.key in ("asgi", "starlette", "fastapi") else cell.closed()
                )
                out.append(
                    f"| {request} | {cell.variant.label} | {c} | {cell.n} | {cell.p(50):.3f} | "
                    f"{cell.p(99):.3f} | {cell.rate:,.0f} | {min(p50s):.3f}-{max(p50s):.3f} | "
                    f"{cell.per_request_us('client_s'):.0f} | {cell.per_request_us('app_s'):.0f} "
                    f"({cell.per_request_us('app_kernel_s'):.0f}) | "
                    f"{cell.per_request_us('nginx_s'):.0f} | "
                    f"{cell.per_request_us('others_s'):.0f} | {closed} |"
                )
    return out


def ratio_table(results: Results, opts: Options) -> list[str]:
    out = [
        "| ratio | C | p50 | p50 added (us) | p99 | p99 added (us) | requests/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for request, measured, against, label in RATIOS:
        for c in opts.concurrency:
            m = results.cells.get((f"{request}:{measured}", c))
            b = results.cells.get((f"{request}:{against}", c))
            if m is None or b is None:
                continue
            out.append(
                f"| {label} | {c} | **{m.p(50) / b.p(50):.2f}x** | "
                f"{1000 * (m.p(50) - b.p(50)):+.0f} | {m.p(99) / b.p(99):.2f}x | "
                f"{1000 * (m.p(99) - b.p(99)):+.0f} | {m.rate / b.rate:.2f}x |"
            )
    return out


def render(results: Results, opts: Options, started: datetime, elapsed: float, cmd: str) -> str:
    info = results.info
    nginx_version, openssl = _nginx_versions()
    tls = next((c.tls for c in results.cells.values() if c.tls), "?")
    keepalive = info.get("keepalive", "?")
    versions = sorted({c.http_version for c in results.cells.values()})
    out = [
        f"# Gateway and HTTP chassis benchmark — {started:%Y-%m-%d}",
        "",
        f"Run `{cmd}` started {started:%Y-%m-%d %H:%M:%S} UTC, took {elapsed:.0f} s. "
        f"Load average at start: {info.get('load at start', '?')}. Code: {info.get('git', '?')}.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine_info(LIBRARIES).items()),
        f"- nginx: {nginx_version} ({openssl}), from `find_nginx()`",
        "- Processes: the servers (the four services' uvicorns, the bare apps) in the benchmark's "
        "process, one thread, one asyncio event loop; nginx (master + 1 worker); the HTTP client "
        "in a second process (`--driver`): all on the same cores. *Others' CPU* is the machine's "
        "busy time minus these processes (from `/proc`): a test suite running meanwhile shows up "
        "there. CPU: the client's and this process's from `time.process_time()`, nginx's from "
        "`/proc/<pid>/schedstat` (ns), the machine's busy time from `/proc/stat` in clock ticks "
        "(10 ms: read *others* per request to about 20 ms / requests per round).",
        "",
        "## Settings",
        "",
        f"- per cell: {opts.warmup} untimed warm-up requests on the cell's own client, then "
        f"N = {opts.requests} timed requests in {opts.rounds} rounds; within a group (request x "
        "C) the variants take turns round by round, their order rotating; each round is preceded "
        "by 2 x C untimed requests on the same client (uvicorn closes keep-alive connections idle"
        " for 5 s); p50/p99 over the cell's N latencies, requests/s = N / the rounds' summed wall"
        " time (first request sent -> last answer read)",
        f"- concurrency C: {', '.join(str(c) for c in opts.concurrency)} asyncio tasks in the "
        "driver sharing one counter, each request awaited before the task sends its next",
        "- client: one `httpx.AsyncClient` per worker task (so C per cell), one keep-alive "
        "connection each, `trust_env=False` (a single client with a pool of C connections cost "
        f"the client about twice the CPU per request at C=16 in a trial run); negotiated "
        f"{', '.join(versions)}; every request "
        "carries `X-Request-ID: bench-...` (unique), so the service does the same request-id work"
        " direct and through nginx (which keeps a well-formed id); latency = `client.get()` "
        "called -> whole body read (`time.perf_counter_ns`)",
        "- servers: `tests.support.served.ServedApps` (each service's `bootstrap()` on"
        " SQLite, migrated, `uvicorn.Config(log_config=None, access_log=False, lifespan='off')` "
        "on one asyncio loop in a thread, under `asyncio.run` like `ServiceRuntime.serve()`, so "
        "anyio reuses its worker threads for the plain-`def` token check: no uvloop, h11 since "
        "httptools is not installed, uvicorn's proxy-headers handling on as by default); the "
        "bare apps on the same loop with the same config; tracing: each service's "
        "`TracerProvider` without exporter (no OTLP endpoint: spans made, not exported), metrics:"
        " a `MeterProvider` without reader; the chassis excludes `/health` and `/ready` from "
        "tracing (`excluded_urls`)",
        "- logging: the service's JSON logging at INFO written to /dev/null (nothing is logged "
        "per request on these paths)",
        "- gateway: `LocalGateway(upstreams=ServedApps.ports, rate_per_second=100000, "
        "burst=100000, tls=TlsFiles(...))`, otherwise the shipped templates: 1 worker, upstream "
        f"`keepalive {keepalive}` (read from the rendered nginx.conf), HTTP/1.1 to the services, "
        "JSON access log on (one line per request, written unbuffered), security headers; TLS "
        "listener: the same body + HSTS, TLS 1.2/1.3, certificate ECDSA P-256 for 127.0.0.1 from "
        f"a throwaway CA; negotiated {tls}; the handshake happens once per connection, in the "
        "warm-up (keep-alive: timed requests pay record encryption only)",
        f"- health body: {info.get('health body', '?')}; read: `GET /api/monitoring/patients/"
        "{id}/symptom-reports` with a clinician dev token (`issue_dev_token(settings, "
        "subject='c-1', role=Role.CLINICIAN, panel=[patient])`), "
        f"{info.get('read body', '?')} seeded by POST before timing; each read verifies the "
        "HS256 token, inserts an `audit_log` row and commits (`authorize_patient_access`), then "
        "selects the reports (SQLite WAL, `synchronous` at its default)",
        "- connections to the service closed: new TIME_WAIT sockets with monitoring's uvicorn "
        "port at one end during the timed rounds (`/proc/net/tcp`; the end that closes holds "
        "the TIME_WAIT): *by caller*, closed by nginx (nginx variants: it keeps at most "
        f"{keepalive} idle upstream connections and closes one after 1000 requests, nginx's "
        "default `keepalive_requests`) or by the client (direct); *by service*, closed by "
        "uvicorn (a keep-alive connection idle for 5 s, e.g. nginx's spare ones while another "
        "variant runs)",
        "",
        "## What each cell measures",
        "",
        "| request | variant | path of one request |",
        "|---|---|---|",
        "| health | raw ASGI callable (reference) | client -> uvicorn (h11) -> an ASGI function "
        "sending a constant body: the HTTP stack's floor |",
        "| health | bare Starlette app (**baseline**) | client -> uvicorn -> Starlette router -> "
        "endpoint -> `JSONResponse(HEALTH)`; no middleware |",
        "| health | bare FastAPI app (reference) | as the baseline, through FastAPI (its "
        "router, dependency solving, response serialisation) with the chassis' health handler; "
        "no middleware |",
        "| health | monitoring (chassis), direct | client -> uvicorn -> the chassis app: "
        "OpenTelemetry ASGI middleware (`/health` excluded: no span), `HttpMetricsMiddleware` "
        "(duration histogram with route template), exception middleware, the service's router "
        "(every route of monitoring) -> `health()` |",
        "| health | monitoring via nginx | client -> nginx (rate/conn limit zones, access log, "
        "headers) -> keep-alive upstream -> as above |",
        "| health | monitoring via nginx TLS | as above, client <-> nginx over TLS |",
        "| read | monitoring (chassis), direct | client -> uvicorn -> chassis middleware (a span "
        "this time) -> token check -> audit insert + commit -> select -> 5 rows as JSON |",
        "| read | monitoring via nginx | client -> nginx -> as above |",
        "",
        "## Results",
        "",
        *results_table(results, opts),
        "",
        "Load average before each group: "
        + "; ".join(f"{k}: {v}" for k, v in results.loads.items())
        + ".",
        "",
        "## Ratios (same run)",
        "",
        "Measured / baseline; *added* is the difference in microseconds. requests/s below 1x: "
        "fewer requests per second than the baseline.",
        "",
        *ratio_table(results, opts),
        "",
        "## Checks (every timed request; a failure stops the run)",
        "",
        *(f"- {c}" for c in results.checks),
        "",
        "## Interpretation",
        "",
        "(written by hand after reading the figures)",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.gateway_bench", description=(__doc__ or "").split("\n", 1)[0]
    )
    p.add_argument("--requests", type=int, default=2000, help="N timed requests per cell (2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed requests per cell first (200)")
    p.add_argument("--rounds", type=int, default=4, help="rounds the variants alternate in (4)")
    p.add_argument("--concurrency", default="1,16", help="C values, comma-separated (1,16)")
    p.add_argument("--reports", type=int, default=5, help="reports of the read's patient (5)")
    p.add_argument("--quick", action="store_true", help="smoke run: N=300, 50 warm-up, 2 rounds")
    p.add_argument("--output", type=Path, default=None, help="a path, or '-' for none")
    p.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = 300, 50, 2
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if args.rounds < 1 or args.requests < args.rounds or not args.concurrency:
        p.error("--rounds >= 1, --requests >= --rounds, at least one --concurrency")
    if min(args.concurrency) < 1 or args.reports < 1:
        p.error("--concurrency values and --reports must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.driver:
        asyncio.run(driver_main())
        return 0
    opts = Options(args.requests, args.warmup, args.rounds, args.concurrency, args.reports)
    cmd = " ".join(["python -m bench.gateway_bench", *(argv if argv is not None else sys.argv[1:])])
    started = datetime.now(UTC)
    results = Results()
    results.info["load at start"] = load()
    results.info["git"] = git_state()
    t0 = time.perf_counter()
    with (
        service_logging("gateway_bench", "INFO"),
        tempfile.TemporaryDirectory(prefix="gwbench-") as tmp,
    ):
        Bench(opts, results, Path(tmp)).run()
    checks(results, opts)
    text = render(results, opts, started, time.perf_counter() - t0, cmd)
    write_results(text, args.output, "gateway", started)
    return 0


def checks(results: Results, opts: Options) -> None:
    """What was verified (any failure raised before we got here)."""
    cells = list(results.cells.values())
    total = sum(c.n for c in cells)
    results.checks += [
        f"{total} timed requests in {len(cells)} cells (+ warm-ups): every answer 200 with the "
        "expected body byte for byte (the same for every variant of a request, compared once "
        "before timing)",
        "read: one `audit_log` row (patient, `read`, `allowed`) per timed request, counted "
        "around every round",
        "nginx variants: one access-log line per timed request; direct variants: none",
    ]
    spread = [
        (c, max(c.round_p50s()) / min(c.round_p50s())) for c in cells if min(c.round_p50s()) > 0
    ]
    worst = max(spread, key=lambda x: x[1], default=None)
    if worst is not None:
        results.checks.append(
            f"stability: the largest spread of a cell's per-round p50 (max / min) is "
            f"{worst[1]:.2f}x ({worst[0].variant.request} {worst[0].variant.label}, "
            f"C={worst[0].concurrency}); median over cells "
            f"{statistics.median(s for _, s in spread):.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
