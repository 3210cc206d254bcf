"""The four services' composition roots, for tests that sweep every service (authorization
matrix, API fuzzing): one SQLite runtime each, no broker started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.core.result import Err, Ok

from contracts import Event
from services.chassis.runtime import ServiceRuntime
from tests.runtimes import SERVICES, runtime_on

__all__ = ["SERVICES", "api_operations", "deliver", "sqlite_runtime", "without_security"]


def sqlite_runtime(name: str, directory: Path, **bootstrap: Any) -> ServiceRuntime:
    """``name``'s runtime on a fresh SQLite file in ``directory`` (migrate it before use);
    ``bootstrap``: extra arguments for its bootstrap (``clock=``, notifications' ``channels=``).
    :func:`tests.runtimes.runtime_on` with a folder."""
    return runtime_on(name, directory, **bootstrap)


async def deliver(runtime: ServiceRuntime, event: Event) -> None:
    """Hand ``event`` to the service's own consumer handler for it and commit, as its consumer
    would after reading it from the broker (none is started)."""
    [handler] = [s.handler for s in runtime.subscriptions if isinstance(event, s.topic.event)]
    async with runtime.uow() as uow:
        await handler(event, uow)
        await uow.commit()


def without_security(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document with its bearer requirements removed, so that schemathesis generates no
    ``Authorization`` header of its own: the test sends each principal's token instead. (Left in,
    most invalid requests would be invalid only in their token — a 401 — and bodies and parameters
    would hardly be tested; tokens are attacked in their own tests.)"""
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return document


def api_operations(document: dict[str, Any]) -> list[Any]:
    r"""Every operation of an OpenAPI ``document`` as schemathesis ``APIOperation``\ s (strategies
    of requests), failing with the reasons if any cannot be loaded."""
    results = list(schemathesis.openapi.from_dict(document).get_all_operations())
    assert [r.err() for r in results if isinstance(r, Err)] == [], "unloadable operations"
    return [r.ok() for r in results if isinstance(r, Ok)]
