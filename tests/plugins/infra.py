"""pytest plugin: real Kafka and PostgreSQL for integration tests, without requiring Docker.

Load with ``pytest_plugins = ["tests.plugins.infra"]`` in tests/conftest.py.

Where each service comes from, in order:

* Kafka (``kafka_bootstrap_servers``): env ``KAFKA_BOOTSTRAP_SERVERS``; else testcontainers
  ``KafkaContainer`` if a Docker engine answers ``docker info`` within 5 s; else
  :class:`deploy.localstack.kafka.LocalKafka` (java + Maven-resolved jars), once per session.
* PostgreSQL (``postgres_server``): env ``TEST_POSTGRES_URL``
  (``postgresql+asyncpg://user:pw@host:port/postgres``); else testcontainers ``PostgresContainer``
  if Docker answers; else :class:`deploy.localstack.postgres.LocalPostgres` ``(fast=True)``.
* ``fresh_pg_dsn`` / ``fresh_pg_dsn_factory`` (function scope): DSN(s) of brand-new databases on
  that server (dropped afterwards), so tests are isolated.
* ``kafka_cluster`` (module scope): a 3-node :class:`LocalKafkaCluster` (needs the launcher: tests
  kill nodes).

Fail loudly: when env ``CI`` is truthy or ``TAPER_REQUIRE_INTEGRATION=1``, a fixture that cannot
provide its service calls ``pytest.fail`` instead of ``pytest.skip``, and if any test marked
``kafka``, ``postgres`` or ``browser`` (headless Chromium) was skipped anyway (e.g. by a
``skipif``), the session prints a banner with the reasons and exits with status 1. Tests using
these fixtures get the ``kafka`` / ``postgres`` marker automatically (so ``-m "not kafka"``
deselects them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import pytest

KAFKA_FIXTURES = {"kafka_bootstrap_servers", "kafka_cluster"}
POSTGRES_FIXTURES = {"postgres_server", "fresh_pg_dsn", "fresh_pg_dsn_factory"}
TRACKED_MARKERS = ("kafka", "postgres", "browser")  # skipped on CI: the run fails

_FALSY = {"", "0", "false", "no", "off"}


def integration_required() -> bool:
    """True on CI (``CI`` truthy) or with ``TAPER_REQUIRE_INTEGRATION=1``."""
    return (
        os.environ.get("CI", "").strip().lower() not in _FALSY
        or os.environ.get("TAPER_REQUIRE_INTEGRATION", "").strip() == "1"
    )


def unavailable(reason: str) -> None:
    """Skip (local dev) or fail (CI / required) because a service cannot be provided."""
    if integration_required():
        pytest.fail(f"[integration required] {reason}", pytrace=False)
    pytest.skip(reason)


def serving(gateway: Any) -> Iterator[Any]:
    """Start ``gateway`` (a deploy.localstack.gateway.LocalGateway), yield it, stop it: for a
    fixture to ``yield from``. nginx that cannot start is ``unavailable`` (a failure on CI)."""
    from deploy.localstack.gateway import GatewayLaunchError

    try:
        gateway.start()
    except GatewayLaunchError as exc:
        gateway.stop()
        unavailable(f"nginx gateway could not start: {exc}")
    yield gateway
    gateway.stop()


@cache
def docker_available() -> bool:
    """A Docker engine answers ``docker info`` within 5 s (a CLI alone is not enough)."""
    if os.environ.get("TAPER_NO_DOCKER", "") == "1" or not shutil.which("docker"):
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=5, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


# --------------------------------------------------------------------------------------------
# PostgreSQL servers: anything with .dsn(name) and .create_database(name)
# --------------------------------------------------------------------------------------------


class PostgresServer(Protocol):
    def dsn(self, database: str = "postgres") -> str: ...

    def create_database(self, name: str) -> Any: ...


@dataclass
class ExternalPostgres:
    """A server we do not manage, given by a URL (any ``postgresql[+driver]://`` form)."""

    url: str
    _parts: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._parts = urlsplit(self.url)
        if not self._parts.scheme.startswith("postgres"):
            raise ValueError(f"not a PostgreSQL URL: {self.url!r}")

    def _with(self, scheme: str, database: str) -> str:
        p = self._parts
        return urlunsplit((scheme, p.netloc, f"/{database}", p.query, ""))

    def dsn(self, database: str = "postgres") -> str:
        """SQLAlchemy async DSN ``postgresql+asyncpg://…/database``."""
        return self._with("postgresql+asyncpg", database)

    def asyncpg_dsn(self, database: str = "postgres") -> str:
        return self._with("postgresql", database)

    def create_database(self, name: str) -> str:
        from deploy.localstack.postgres import create_database_async, run_sync

        admin_db = self._parts.path.lstrip("/") or "postgres"
        run_sync(lambda: create_database_async(self.asyncpg_dsn(admin_db), name))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        from deploy.localstack.postgres import quote_ident, run_sync

        async def _drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(
                self.asyncpg_dsn(self._parts.path.lstrip("/") or "postgres"), timeout=15
            )
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            finally:
                await conn.close()

        run_sync(_drop)


def _local_postgres_as_external(pg: Any) -> ExternalPostgres:
    return ExternalPostgres(pg.asyncpg_dsn("postgres"))


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap_servers() -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield env
        return
    if docker_available():
        try:
            try:
                from testcontainers.community.kafka import KafkaContainer
            except ImportError:  # older testcontainers layout
                from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef,unused-ignore]
            # Confluent Platform 8.0 ships Apache Kafka 4.0 (KRaft only).
            image = os.environ.get("TAPER_KAFKA_IMAGE", "confluentinc/cp-kafka:8.0.0")
            container = KafkaContainer(image).with_kraft()
            container.start()
        except Exception as exc:
            unavailable(f"Kafka testcontainer failed to start: {type(exc).__name__}: {exc}")
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
        return
    from deploy.localstack.kafka import LocalKafka

    kafka = LocalKafka()
    try:
        kafka.start()
    except Exception as exc:
        kafka.cleanup()
        unavailable(
            f"no KAFKA_BOOTSTRAP_SERVERS, no Docker, and LocalKafka failed: "
            f"{type(exc).__name__}: {exc}"
        )
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()
        kafka.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    env = os.environ.get("TEST_POSTGRES_URL", "").strip()
    if env:
        yield ExternalPostgres(env)
        return
    if docker_available():
        try:
            try:
                from testcontainers.community.postgres import PostgresContainer
            except ImportError:
                from testcontainers.postgres import PostgresContainer  # type: ignore[no-redef,unused-ignore]
            image = os.environ.get("TAPER_POSTGRES_IMAGE", "postgres:15")
            container = PostgresContainer(image, driver=None)
            container.start()
        except Exception as exc:
            unavailable(f"PostgreSQL testcontainer failed to start: {type(exc).__name__}: {exc}")
        try:
            yield ExternalPostgres(container.get_connection_url())
        finally:
            container.stop()
        return
    from deploy.localstack.postgres import LocalPostgres

    pg = LocalPostgres(fast=True)
    try:
        pg.start()
    except Exception as exc:
        pg.stop()
        unavailable(
            f"no TEST_POSTGRES_URL, no Docker, and LocalPostgres failed: "
            f"{type(exc).__name__}: {exc}"
        )
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def fresh_pg_dsn_factory(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """A callable returning the DSN of a brand-new, uniquely named database on each call.

    All databases it created are dropped (best effort) when the test ends.
    """
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        try:
            postgres_server.create_database(name)
        except Exception as exc:
            unavailable(f"cannot create test database {name}: {type(exc).__name__}: {exc}")
        created.append(name)
        return postgres_server.dsn(name)

    yield make
    drop = getattr(postgres_server, "drop_database", None)
    if drop is None and hasattr(postgres_server, "asyncpg_dsn"):
        drop = _local_postgres_as_external(postgres_server).drop_database
    for name in created:
        if drop is not None:
            with contextlib.suppress(Exception):  # the server is throwaway anyway
                drop(name)


@pytest.fixture
def fresh_pg_dsn(fresh_pg_dsn_factory: Callable[[], str]) -> str:
    """DSN (``postgresql+asyncpg://``) of a brand-new, uniquely named database."""
    return fresh_pg_dsn_factory()


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[Any]:
    """A started 3-node :class:`deploy.localstack.kafka.LocalKafkaCluster` (RF 3, min.isr 2)."""
    from deploy.localstack.kafka import LocalKafkaCluster

    cluster = LocalKafkaCluster(nodes=3)
    try:
        cluster.start()
    except Exception as exc:
        cluster.cleanup()
        unavailable(f"3-node LocalKafkaCluster failed: {type(exc).__name__}: {exc}")
    try:
        yield cluster
    finally:
        cluster.cleanup()


# --------------------------------------------------------------------------------------------
# hooks: auto-markers and "no silent skips on CI"
# --------------------------------------------------------------------------------------------

# (nodeid, reason) of skipped tests marked kafka/postgres. Module-level because
# pytest_runtest_logreport gets no config; with xdist, worker reports are replayed on the
# controller.
_SKIPPED: list[tuple[str, str]] = []


def pytest_configure(config: pytest.Config) -> None:
    _SKIPPED.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & KAFKA_FIXTURES and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)
        if names & POSTGRES_FIXTURES and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)


def _skip_reason(report: pytest.TestReport) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    if any(m in report.keywords for m in TRACKED_MARKERS):
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if integration_required() and _SKIPPED and session.exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _SKIPPED:
        return
    tr = terminalreporter
    if integration_required():
        tr.write_sep(
            "!",
            "INTEGRATION TESTS WERE SKIPPED BUT ARE REQUIRED (CI / "
            "TAPER_REQUIRE_INTEGRATION=1) -> exit status 1",
            red=True,
            bold=True,
        )
    else:
        tr.write_sep(
            "-",
            "integration tests skipped (set CI=1 or TAPER_REQUIRE_INTEGRATION=1 "
            "to make this an error)",
            yellow=True,
        )
    for nodeid, reason in _SKIPPED:
        tr.write_line(f"SKIPPED {nodeid}: {reason}")
