"""Fixtures of the gateway tests: the four services behind the real nginx gateway, and headless
Chromium for the pages (skipped, or failed on CI, where there is none)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.localstack.browser import BrowserUnavailable, find_chromium
from tests.plugins.infra import serving, unavailable
from tests.support.served import Served, ServedApps


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from deploy.localstack.gateway import LocalGateway

    apps = ServedApps(tmp_path_factory.mktemp("fuzz"))
    try:
        gateway = LocalGateway(upstreams=apps.ports, rate_per_second=100_000, burst=100_000)
        for running in serving(gateway):
            yield Served(running.url, apps)
    finally:
        apps.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return find_chromium(install=True)
    except BrowserUnavailable as exc:
        unavailable(f"headless chromium unavailable: {exc}")
        raise  # unreachable: unavailable() skips or fails
