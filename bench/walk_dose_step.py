"""Walk ONE plan dose step through the scheduler and count how often it re-enters each module.

``python -m bench.walk_dose_step`` builds the scheduler as the unit tests do (``bootstrap`` over a
migrated SQLite file, a ``FrozenClock``, the ASGI app through httpx; no broker), drafts and
approves a plan through the HTTP API, moves the clock to the first step's date and fires the due
timer (``runtime.timers.fire_due()``): the step is emitted and ``DoseReduced`` lands in the outbox.
Only that firing is watched (``sys.setprofile``).

What it counts, over ``services.scheduler.*`` modules only (library and chassis frames are
transparent):

* the walk: the module of every scheduler function called, in order, with a return to the caller's
  module before each call made after a callee returned (so ``plans -> handlers._load -> plans ->
  handlers.emit_step`` is four visits). A coroutine resumed after an ``await`` is not a call.
* **entries** per module: how many times the walk arrives in that module from another one;
* **private cross-module calls**: calls from a function of one module to a ``_name`` function of
  another module.

The figures depend on the code only (no timing), so before/after runs compare like for like.
``--walk`` also prints the walk itself; ``--manual`` walks a reduction scheduled by hand
(``POST /dose-reductions``, a one-step plan of kind manual) instead.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dis
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import httpx
import sqlalchemy as sa

from services.chassis.auth import Role, issue_dev_token
from services.chassis.clock import FrozenClock
from services.chassis.migrations import upgrade_to_head
from services.scheduler.bootstrap import bootstrap
from services.scheduler.settings import SchedulerSettings

PACKAGE = "services.scheduler"
NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
# A taper started by hand and one reduction scheduled by hand (``--manual``).
MANUAL_START: dict[str, Any] = {
    "drug": "diazepam",
    "half_life_class": "long",
    "current_daily_dose_mg": "10",
    "reason_code": "taper_initiated",
}
MANUAL_STEP: dict[str, Any] = {
    "new_daily_dose_mg": "8",
    "effective_on": "2026-01-19",
    "reason_code": "planned_step",
}
BODY: dict[str, Any] = {
    "drug": "diazepam",
    "administrations_mg": ["5", "5"],
    "duration_weeks": 30,
    "age": 40,
    "start_on": "2026-01-12",
    "formulations": ["diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"],
}


def _first_resume(code: CodeType, cache: dict[CodeType, int]) -> int:
    """Offset of the code's first RESUME: a frame at or before it is a fresh call."""
    if code not in cache:
        cache[code] = next(
            (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"), 0
        )
    return cache[code]


@dataclass
class Walk:
    """Fresh calls into scheduler modules, each with its nearest scheduler caller."""

    visits: list[str] = field(default_factory=list)  # module per step of the walk
    private_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (module, function) in order
    _resume_at: dict[CodeType, int] = field(default_factory=dict)

    def profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(PACKAGE):
            return
        if frame.f_lasti > _first_resume(frame.f_code, self._resume_at):
            return  # a coroutine resumed after an await, not a call
        caller = frame.f_back
        while caller is not None and not caller.f_globals.get("__name__", "").startswith(PACKAGE):
            caller = caller.f_back
        name = frame.f_code.co_name
        if caller is not None:
            from_module = caller.f_globals["__name__"]
            self.visits.append(from_module)  # back in the caller (a no-op if still there)
            is_private = name.startswith("_") and not name.startswith("__")
            if from_module != module and is_private:
                self.private_calls[(from_module, module)] += 1
        self.visits.append(module)
        self.calls.append((module, name))

    def path(self) -> list[str]:
        """The walk with repeats of the same module collapsed."""
        out: list[str] = []
        for m in self.visits:
            if not out or out[-1] != m:
                out.append(m)
        return out

    def entries(self, *, skip: tuple[str, ...] = ()) -> Counter[str]:
        """Arrivals per module; modules under a package in ``skip`` (e.g. ``domain``) are
        transparent: the walk as seen from the other layers."""
        out: list[str] = []
        for m in self.path():
            if m.startswith(tuple(f"{PACKAGE}.{layer}" for layer in skip)):
                continue
            if not out or out[-1] != m:
                out.append(m)
        return Counter(out)


def static_private_refs() -> Counter[tuple[str, str]]:
    """``module._name`` references in the scheduler's source to another scheduler module's
    private names (read from the code, whether or not this walk runs them)."""
    found: Counter[tuple[str, str]] = Counter()
    root = Path(__file__).resolve().parent.parent / "services" / "scheduler"
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found[(name, aliases[node.value.id])] += 1
    return found


async def walk_one_step(workdir: Path, *, manual: bool = False) -> Walk:
    settings = SchedulerSettings(
        database_url=f"sqlite+aiosqlite:///{workdir}/scheduler.db",
        environment="test",
        kafka_provision_topics=False,
    )
    clock = FrozenClock(NOW)
    runtime = bootstrap(settings, clock=clock)
    await upgrade_to_head(runtime.engine, "scheduler")
    patient = uuid.uuid4()
    base = f"/api/scheduler/patients/{patient}"
    token = issue_dev_token(settings, subject="clinician-1", role=Role.CLINICIAN, panel=[patient])
    headers = {"Authorization": f"Bearer {token}"}
    walk = Walk()
    try:
        transport = httpx.ASGITransport(app=runtime.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://walk") as client:
            if manual:  # a reduction scheduled by hand: a one-step plan of kind manual
                r = await client.post(f"{base}/taper", json=MANUAL_START, headers=headers)
                r.raise_for_status()
                r = await client.post(f"{base}/dose-reductions", json=MANUAL_STEP, headers=headers)
                r.raise_for_status()
                first_on = r.json()["effective_on"]
            else:
                r = await client.post(f"{base}/plans", json=BODY, headers=headers)
                r.raise_for_status()
                plan_id = r.json()["id"]
                r = await client.post(f"{base}/plans/{plan_id}/approve", json={}, headers=headers)
                r.raise_for_status()
                first_on = r.json()["steps"][0]["effective_on"]
        clock.set(datetime.fromisoformat(first_on).replace(tzinfo=UTC))
        sys.setprofile(walk.profile)
        try:
            fired = await runtime.timers.fire_due()
        finally:
            sys.setprofile(None)
        async with runtime.uow() as uow:
            outbox = uow.table("outbox")
            types = (await uow.session.execute(sa.select(outbox.c.event_type))).scalars().all()
        if fired != 1 or list(types) != ["DoseReduced"]:
            raise SystemExit(f"the step was not emitted: fired={fired}, outbox={list(types)}")
    finally:
        await runtime.engine.dispose()
    return walk


def report(walk: Walk, *, show_walk: bool, manual: bool = False) -> str:
    short = {m: m.removeprefix(PACKAGE + ".") for m in set(walk.visits)}
    what = "manual (POST /dose-reductions)" if manual else "plan"
    lines = [f"One {what} dose step (timer fires -> DoseReduced in the outbox):", ""]
    lines.append(f"{'module':<44} entries")
    for module, n in sorted(walk.entries().items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{short[module]:<44} {n:>7}")
    lines += ["", "calls into another module's _private functions:"]
    total = sum(walk.private_calls.values())
    for (src, dst), n in sorted(walk.private_calls.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {short[src]} -> {short[dst]}: {n}")
    lines.append(f"  total: {total}")
    lines.append(f"scheduler function calls: {len(walk.calls)}")
    for title, skip in (
        ("service layer and adapters (domain transparent)", ("domain",)),
        ("service layer only (domain and adapters transparent)", ("domain", "adapters")),
    ):
        lines += ["", f"{title:<60} entries"]
        for module, n in sorted(walk.entries(skip=skip).items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {short[module]:<58} {n:>7}")
    lines += ["", "in the source: module._private references to another scheduler module:"]
    static = static_private_refs()
    for (src, dst), n in sorted(static.items(), key=lambda kv: (-kv[1], kv[0])):
        src, dst = src.removeprefix(PACKAGE + "."), dst.removeprefix(PACKAGE + ".")
        lines.append(f"  {src} -> {dst}: {n}")
    lines.append(f"  total: {sum(static.values())}")
    if show_walk:
        lines += ["", "walk: " + " -> ".join(short[m] for m in walk.path())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walk", action="store_true", help="print the walk itself too")
    parser.add_argument(
        "--manual",
        action="store_true",
        help="walk a reduction scheduled by hand (POST /dose-reductions) instead of a plan's step",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="walk-") as tmp:
        walk = asyncio.run(walk_one_step(Path(tmp), manual=args.manual))
    print(report(walk, show_walk=args.walk, manual=args.manual))


if __name__ == "__main__":
    main()
