"""The scheduler over SQLite with its migrations, a frozen clock and an HTTP client (no broker
started): the fixtures the plan and taper API tests share. A module that needs another runtime
(not migrated, another clock) defines its own ``runtime`` fixture, which takes precedence."""

from __future__ import annotations

from tests.runtimes import client_fixture, runtime_fixture
from tests.unit.scheduler.support import NOW

runtime = runtime_fixture("scheduler", at=NOW)
client = client_fixture()
