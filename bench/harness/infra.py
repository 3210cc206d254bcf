"""The benchmarks' infrastructure: ours (LocalKafka, LocalPostgres with real durability) unless
the environment names one (``KAFKA_BOOTSTRAP_SERVERS``, ``TEST_POSTGRES_URL``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class Pg:
    """PostgreSQL: ``TEST_POSTGRES_URL``, else a LocalPostgres started here (``local``)."""

    def __init__(self) -> None:
        self.local: Any = None
        self.url = os.environ.get("TEST_POSTGRES_URL", "").strip()
        self.source = "external (TEST_POSTGRES_URL)"

    def start(self) -> None:
        if not self.url:
            from deploy.localstack.postgres import LocalPostgres

            print("starting LocalPostgres(fast=False) ...", flush=True)
            self.local = LocalPostgres(fast=False)  # real durability: fsync, synchronous_commit on
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


class Infra:
    """Kafka (``KAFKA_BOOTSTRAP_SERVERS``, else a LocalKafka started here) and :class:`Pg`."""

    def __init__(self) -> None:
        self.kafka: Any = None
        self.postgres = Pg()
        self.bootstrap_servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        self.kafka_source = "external (KAFKA_BOOTSTRAP_SERVERS)"
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
        self.postgres.start()

    def stop(self) -> None:
        if self.kafka is not None:
            with contextlib.suppress(Exception):
                self.kafka.stop()
            self.kafka.cleanup()
            self.kafka = None
        self.postgres.stop()

    @property
    def pg(self) -> Any:
        """The LocalPostgres started here, or None."""
        return self.postgres.local

    @property
    def pg_url(self) -> str:
        return self.postgres.url

    @property
    def pg_source(self) -> str:
        return self.postgres.source

    def asyncpg_dsn(self, database: str) -> str:
        return self.postgres.dsn(database)

    def sqlalchemy_dsn(self, database: str) -> str:
        return self.postgres.dsn(database, "postgresql+asyncpg")

    @property
    def admin_database(self) -> str:
        return self.postgres.admin_db
