"""Monitoring over migrated SQLite with a frozen clock at ``test_api.NOW`` and an HTTP client (no
broker started): the fixtures the API tests share. A module that needs another runtime defines
its own ``runtime`` fixture, which takes precedence."""

from __future__ import annotations

from tests.runtimes import client_fixture, runtime_fixture
from tests.unit.monitoring.test_api import NOW

runtime = runtime_fixture("monitoring", at=NOW)
client = client_fixture()
