"""Fixture of the gateway tests: the four services behind the real nginx gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.gateway.served import Served, ServedApps
from tests.plugins.infra import unavailable


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from deploy.localstack.gateway import GatewayLaunchError, LocalGateway

    apps = ServedApps(tmp_path_factory.mktemp("fuzz"))
    gateway = LocalGateway(upstreams=apps.ports, rate_per_second=100_000, burst=100_000)
    try:
        gateway.start()
    except GatewayLaunchError as exc:
        apps.close()
        unavailable(f"nginx gateway could not start: {exc}")
    yield Served(gateway.url, apps)
    gateway.stop()
    apps.close()
