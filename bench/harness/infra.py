"""The benchmarks' infrastructure: ours (LocalKafka, LocalPostgres with real durability) unless
the environment names one (``KAFKA_BOOTSTRAP_SERVERS``, ``TEST_POSTGRES_URL``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class Infra:
    """Kafka and PostgreSQL."""

    def __init__(self) -> None:
        self.kafka: Any = None
        self.pg: Any = None
        self.bootstrap_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        self.pg_url = os.environ.get("TEST_POSTGRES_URL", "").strip()
        self.kafka_source = "external (KAFKA_BOOTSTRAP_SERVERS)"
        self.pg_source = "external (TEST_POSTGRES_URL)"
        self.kafka_version = "not probed (external broker)"

    def start(self) -> None:
        """Start what is missing. Call from the main thread (PDEATHSIG ties them to us)."""
        if not self.bootstrap_servers:
            from deploy.localstack.kafka import LocalKafka, kafka_classpath

            print("starting LocalKafka ...", flush=True)
            self.kafka = LocalKafka()
            self.kafka.start()
            self.bootstrap_servers = self.kafka.bootstrap_servers
            self.kafka_source = f"LocalKafka (single node, KRaft), pid {self.kafka.pid}"
            jars = sorted(Path(kafka_classpath().rstrip("*")).glob("kafka_2.13-*.jar"))
            self.kafka_version = jars[0].stem.removeprefix("kafka_2.13-") if jars else "?"
        if not self.pg_url:
            from deploy.localstack.postgres import LocalPostgres

            print("starting LocalPostgres(fast=False) ...", flush=True)
            self.pg = LocalPostgres(fast=False)  # real durability: fsync, synchronous_commit on
            self.pg.start()
            self.pg_url = self.pg.asyncpg_dsn("postgres")
            self.pg_source = f"LocalPostgres(fast=False), pid {self.pg.proc.pid}"

    def stop(self) -> None:
        if self.kafka is not None:
            with contextlib.suppress(Exception):
                self.kafka.stop()
            self.kafka.cleanup()
            self.kafka = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None

    def _url(self, scheme: str, database: str) -> str:
        p = urlsplit(self.pg_url)
        return urlunsplit((scheme, p.netloc, f"/{database}", p.query, ""))

    def asyncpg_dsn(self, database: str) -> str:
        return self._url("postgresql", database)

    def sqlalchemy_dsn(self, database: str) -> str:
        return self._url("postgresql+asyncpg", database)

    @property
    def admin_database(self) -> str:
        return urlsplit(self.pg_url).path.lstrip("/") or "postgres"


class Pg:
    """PostgreSQL only."""

    def __init__(self) -> None:
        self.local: Any = None
        self.url = os.environ.get("TEST_POSTGRES_URL", "").strip()
        self.source = "external (TEST_POSTGRES_URL)"

    def start(self) -> None:
        if not self.url:
            from deploy.localstack.postgres import LocalPostgres

            print("starting LocalPostgres(fast=False) ...", flush=True)
            self.local = LocalPostgres(fast=False)
            self.local.start()
            self.url = self.local.asyncpg_dsn("postgres")
            self.source = f"LocalPostgres(fast=False), pid {self.local.proc.pid}"

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()
            self.local = None

    def dsn(self, database: str, scheme: str = "postgresql") -> str:
        p = urlsplit(self.url)
        return urlunsplit((scheme, p.netloc, f"/{database}", p.query, ""))

    @property
    def admin_db(self) -> str:
        return urlsplit(self.url).path.lstrip("/") or "postgres"
