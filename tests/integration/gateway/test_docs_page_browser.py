"""The gateway's docs pages rendered by headless Chromium with no name resolution at all (offline:
a CDN cannot be reached): Swagger UI shows every operation of the merged document at /api/docs/,
and a service's at /api/<service>/docs (issue 18: the docs page was blank offline)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from deploy.localstack.browser import dump_dom_url
from deploy.localstack.gateway import MERGED_OPENAPI
from tests.support.served import Served

pytestmark = pytest.mark.browser


def _missing_operations(dom: str, document: dict[str, Any]) -> list[str]:
    """The operations of ``document`` that Swagger UI did not render (it renders each as a block
    with id "operations-<tag>-<operationId>")."""
    ids = re.findall(r'id="operations-([^"]+)"', dom)
    return [
        op["operationId"]
        for ops in document["paths"].values()
        for op in ops.values()
        if not any(i.endswith(f"-{op['operationId']}") for i in ids)
    ]


def test_the_merged_docs_render_offline(served: Served, chromium: str) -> None:
    document = json.loads(MERGED_OPENAPI.read_text())
    dom = dump_dom_url(f"{served.url}/api/docs/", offline=True)
    assert "taper API" in dom, dom[-2000:]
    assert _missing_operations(dom, document) == []


def test_a_services_docs_render_offline_through_the_gateway(served: Served, chromium: str) -> None:
    document = httpx.get(f"{served.url}/api/monitoring/openapi.json").json()
    dom = dump_dom_url(f"{served.url}/api/monitoring/docs", offline=True)
    assert "taper monitoring" in dom, dom[-2000:]
    assert _missing_operations(dom, document) == []
    assert "/api/scheduler/" not in dom  # that service's document, not the merged one
