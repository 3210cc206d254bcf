"""The local infrastructure launchers really work: Kafka round trip, PostgreSQL, 3-node durability,
nginx gateway routing. Uses the fixtures of tests/plugins/infra.py."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tests.plugins.infra import serving


def _asyncpg_url(sqlalchemy_dsn: str) -> str:
    return sqlalchemy_dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


def _create_topic(bootstrap: str, topic: str, partitions: int, rf: int, **configs: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="infra-test-admin")
    try:
        admin.create_topics([NewTopic(topic, partitions, rf, topic_configs=dict(configs))])
        deadline = time.monotonic() + 30
        while True:  # wait until every partition has a leader
            desc = admin.describe_topics([topic])[0]
            parts = desc.get("partitions") or []
            if len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts):
                return
            assert time.monotonic() < deadline, f"topic {topic} not ready: {desc}"
            time.sleep(0.2)
    finally:
        admin.close()


def _partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="infra-test-admin")
    try:
        desc = admin.describe_topics([topic])[0]
        return {p["partition_index"]: p["leader_id"] for p in desc["partitions"]}
    finally:
        admin.close()


async def _consume_all(
    bootstrap: str, topic: str, group: str, expected: int, timeout: float = 60
) -> tuple[list[bytes], AIOKafkaConsumer]:
    """Consume with a group consumer + manual commit until ``expected`` records (or timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            values.extend(r.value for r in records)
        if batches:
            await consumer.commit()  # commit only after "processing"
    return values, consumer


# ------------------------------------------------------------------------------------------
# (a) Kafka: idempotent acks=all producer -> group consumer with manual commit
# ------------------------------------------------------------------------------------------


async def test_kafka_produce_consume_roundtrip(kafka_bootstrap_servers: str) -> None:
    topic = f"infra-roundtrip-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_create_topic, kafka_bootstrap_servers, topic, 3, 1)

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [f"msg-{i}".encode() for i in range(100)]
        metas = [await producer.send_and_wait(topic, v, key=str(i).encode())
                 for i, v in enumerate(sent)]  # fmt: skip
    finally:
        await producer.stop()
    assert {m.topic for m in metas} == {topic}
    assert {m.partition for m in metas} <= {0, 1, 2}
    end_offsets = {}
    for m in metas:
        end_offsets[m.partition] = max(end_offsets.get(m.partition, -1), m.offset + 1)

    group = f"infra-group-{uuid.uuid4().hex[:8]}"
    values, consumer = await _consume_all(kafka_bootstrap_servers, topic, group, expected=100)
    try:
        assert sorted(values) == sorted(sent), "every produced message is consumed exactly once"
        for partition, end in end_offsets.items():
            committed = await consumer.committed(TopicPartition(topic, partition))
            assert committed == end, f"partition {partition}: committed {committed} != {end}"
    finally:
        await consumer.stop()

    # a new consumer in the same group resumes after the committed offsets: nothing left
    again, consumer2 = await _consume_all(
        kafka_bootstrap_servers, topic, group, expected=1, timeout=3
    )
    await consumer2.stop()
    assert again == []


# ------------------------------------------------------------------------------------------
# (b) PostgreSQL: asyncpg round trip on a fresh database; databases are isolated
# ------------------------------------------------------------------------------------------


async def test_postgres_roundtrip_on_fresh_database(fresh_pg_dsn: str) -> None:
    assert fresh_pg_dsn.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(_asyncpg_url(fresh_pg_dsn))
    try:
        dbname = await conn.fetchval("SELECT current_database()")
        assert fresh_pg_dsn.endswith("/" + dbname)
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
        )
        assert tables == 0, "a fresh database has no tables"
        await conn.execute("CREATE TABLE doses (id serial PRIMARY KEY, mg numeric NOT NULL)")
        async with conn.transaction():
            await conn.executemany("INSERT INTO doses (mg) VALUES ($1)", [(5,), (4.5,), (4,)])
        rows = await conn.fetch("SELECT mg FROM doses ORDER BY id")
        assert [float(r["mg"]) for r in rows] == [5.0, 4.5, 4.0]
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()


async def test_postgres_fresh_databases_are_isolated(fresh_pg_dsn_factory: Any) -> None:
    a, b = fresh_pg_dsn_factory(), fresh_pg_dsn_factory()
    assert a != b
    ca = await asyncpg.connect(_asyncpg_url(a))
    cb = await asyncpg.connect(_asyncpg_url(b))
    try:
        await ca.execute("CREATE TABLE only_in_a (x int)")
        assert await cb.fetchval("SELECT to_regclass('public.only_in_a')") is None
        assert await ca.fetchval("SELECT to_regclass('public.only_in_a')") is not None
    finally:
        await ca.close()
        await cb.close()


# ------------------------------------------------------------------------------------------
# (c) 3-node cluster: RF 3 / min.isr 2, kill a leader, every acked message survives
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.kafka
async def test_cluster_acked_messages_survive_node_kill(kafka_cluster: Any) -> None:
    bootstrap = kafka_cluster.bootstrap_servers
    topic = f"infra-durable-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_create_topic, bootstrap, topic, 3, 3, **{"min.insync.replicas": "2"})
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=15000,
    )
    await producer.start()
    acked: list[bytes] = []
    failed: list[tuple[bytes, str]] = []
    victim_index: int | None = None
    try:
        for i in range(300):
            if i == 100:
                leaders = await asyncio.to_thread(_partition_leaders, bootstrap, topic)
                victim_index = leaders[0] - 1  # node.id = index + 1: kill partition 0's leader
                kafka_cluster.kill_node(victim_index)
            value = f"dose-{i}".encode()
            try:
                await producer.send_and_wait(topic, value, key=str(i).encode())
                acked.append(value)
            except Exception as exc:  # an un-acked send is allowed to be lost, not an acked one
                failed.append((value, repr(exc)))
    finally:
        await producer.stop()

    assert victim_index is not None
    assert kafka_cluster.running_nodes() == [i for i in range(3) if i != victim_index]
    # With RF 3 and min.isr 2, losing one node must not stop acks=all writes.
    assert len(acked) >= 290, f"too many sends failed after one node died: {failed[:5]}"
    assert len(acked) > 100, "writes after the kill were acknowledged"

    values, consumer = await _consume_all(
        bootstrap, topic, f"infra-durable-{uuid.uuid4().hex[:8]}", expected=len(acked)
    )
    await consumer.stop()
    missing = set(acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"

    # the node comes back on its old dir/ports and rejoins
    await asyncio.to_thread(kafka_cluster.start_node, victim_index)
    assert kafka_cluster.running_nodes() == [0, 1, 2]


# ------------------------------------------------------------------------------------------
# (d) nginx gateway routes by prefix, passes the path unchanged, sets X-Request-ID
# ------------------------------------------------------------------------------------------


class _Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _EchoHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    server: _Upstream
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = {
            "service": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": len(body),
        }
        self.server.requests.append(seen)
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _reply
    do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstreams() -> Iterator[dict[str, _Upstream]]:
    servers = {"scheduler": _Upstream("scheduler"), "group_matching": _Upstream("group_matching")}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for t in threads:
        t.start()
    yield servers
    for s in servers.values():
        s.shutdown()
        s.server_close()


@pytest.fixture
def gateway(upstreams: dict[str, _Upstream]) -> Iterator[Any]:
    from deploy.localstack.gateway import LocalGateway

    yield from serving(LocalGateway(upstreams={name: s.port for name, s in upstreams.items()}))


def _get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None
         ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_gateway_routes_by_prefix_and_sets_request_id(
    gateway: Any, upstreams: dict[str, _Upstream]
) -> None:
    status, headers, body = _get(f"{gateway.url}/api/scheduler/health")
    assert status == 200
    seen = json.loads(body)
    assert seen["service"] == "scheduler"
    assert seen["path"] == "/api/scheduler/health", "path must pass through unchanged"
    rid = seen["headers"].get("x-request-id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", rid), f"generated X-Request-ID expected, got {rid!r}"
    assert headers.get("X-Request-ID") == rid, "the response carries the same request id"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"

    status, _, body = _get(
        f"{gateway.url}/api/group-matching/health?cohort=7",
        headers={"X-Request-ID": "client-req-42", "X-Forwarded-For": "6.6.6.6"},
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["service"] == "group_matching"
    assert seen["path"] == "/api/group-matching/health?cohort=7"
    assert seen["headers"]["x-request-id"] == "client-req-42", "a sane client id is kept"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1", "client XFF is not trusted"

    # malformed client request ids are replaced (no log injection)
    _, _, body = _get(f"{gateway.url}/api/scheduler/health", headers={"X-Request-ID": 'a b"c'})
    assert re.fullmatch(r"[0-9a-f]{32}", json.loads(body)["headers"]["x-request-id"])

    assert [r["service"] for r in upstreams["scheduler"].requests] == ["scheduler"] * 2
    assert [r["service"] for r in upstreams["group_matching"].requests] == ["group_matching"]

    # unknown prefixes are not forwarded anywhere; an unconfigured service is a 502
    assert _get(f"{gateway.url}/api/unknown/health")[0] == 404
    assert _get(f"{gateway.url}/api/monitoring/health")[0] == 502
    # body limit 1 MiB, refused as JSON with the security headers
    status, headers, body = _get(f"{gateway.url}/api/scheduler/x", data=b"x" * (1024 * 1024 + 10))
    assert status == 413 and "too large" in json.loads(body)["detail"]
    assert headers.get("X-Content-Type-Options") == "nosniff"
    status, headers, _ = _get(f"{gateway.url}/api/scheduler/health")
    assert (headers.get("X-Frame-Options"), headers.get("Cache-Control")) == ("DENY", "no-store")

    # JSON access log without query strings
    time.sleep(0.1)
    lines = [json.loads(line) for line in gateway.access_log.read_text().splitlines()]
    assert {"/api/scheduler/health", "/api/group-matching/health"} <= {x["path"] for x in lines}
    assert "cohort" not in gateway.access_log.read_text()
    assert any(x["request_id"] == "client-req-42" for x in lines)


def test_gateway_rate_limits_each_client_with_a_json_429(
    gateway: Any, upstreams: dict[str, _Upstream]
) -> None:
    """A burst far above the per-client limit (20/s, bursts of 40) meets 429s, as JSON, and
    those requests never reach the service behind."""
    from concurrent.futures import ThreadPoolExecutor

    before = len(upstreams["scheduler"].requests)
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda _: _get(f"{gateway.url}/api/scheduler/health"), range(200)))
    statuses = [status for status, _, _ in answers]
    refused = [body for status, _, body in answers if status == 429]
    assert refused and statuses.count(200) >= 40
    assert json.loads(refused[0]) == {"detail": "too many requests, slow down"}
    assert len(upstreams["scheduler"].requests) - before == statuses.count(200)
