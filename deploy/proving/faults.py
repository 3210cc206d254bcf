"""The seeded fault schedule and its executor.

A schedule is a list of :class:`Fault` s, a pure function of (targets, rounds, duration, seed):
the same seed gives the same faults at the same offsets, so a failing run can be repeated. Each
round picks one target group and a fault that the group can take:

* a service replica: ``kill -9`` (a relay mid-batch or a timer mid-page is whichever replica
  holds the lock at the time: every replica is killed in turn, so the lock holder is too);
* a broker: ``kill -9`` or ``SIGSTOP`` of the controller, of a dead-letter partition's leader, or
  of another broker;
* PostgreSQL: ``kill -9`` and an immediate restart;
* the gateway: a restart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deploy.proving.topology import FaultKind, Target, Topology


@dataclass(frozen=True)
class Fault:
    at_s: float  # offset from the start of the run
    group: str
    target: str  # a target name, or "@controller" / "@dlq_leader" resolved at run time
    kind: FaultKind
    down_s: float  # how long the target stays down (killed) or stopped


@dataclass(frozen=True)
class Applied:
    fault: Fault
    target: str  # resolved name
    started: float  # wall-clock (time.time()) when the fault began
    recovered: float | None  # when every process answered again (None: never, a failure)

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.started


def schedule(
    targets: Sequence[Target], *, rounds: int, duration_s: float, seed: int, down_s: float = 3.0
) -> list[Fault]:
    """``rounds`` faults per target group, spread over ``duration_s`` in seeded random order."""
    rng = random.Random(seed)
    by_group: dict[str, list[str]] = {}
    for t in targets:
        if t.group != "sinks":
            by_group.setdefault(t.group, []).append(t.name)
    plan: list[tuple[str, str, FaultKind]] = []
    for group in sorted(by_group):
        names = sorted(by_group[group])
        for i in range(rounds):
            plan.append((group, *_pick(group, names, i, rng)))
    rng.shuffle(plan)
    if not plan:
        return []
    gap = duration_s / (len(plan) + 1)
    return [
        Fault(
            at_s=round(gap * (i + 1) + rng.uniform(-gap / 4, gap / 4), 3),
            group=group,
            target=target,
            kind=kind,
            down_s=round(rng.uniform(down_s / 2, down_s), 3),
        )
        for i, (group, target, kind) in enumerate(plan)
    ]


def _pick(group: str, names: list[str], i: int, rng: random.Random) -> tuple[str, FaultKind]:
    if group == "kafka":
        # Alternate kill and stop; every third round a named role, so the controller and a DLQ
        # partition's leader are among the faulted brokers whatever the seed.
        kind: FaultKind = "kill" if i % 2 == 0 else "stop"
        role = ("@controller", "@dlq_leader", rng.choice(names))[i % 3]
        return role, kind
    if group in ("gateway", "postgres"):  # kill -9 and an immediate restart
        return names[i % len(names)], "restart"
    # Service replicas in turn (every replica, so also the one holding the relay/timer lock).
    return names[i % len(names)], "kill"


class Executor:
    """Applies faults to a topology and measures recovery (until every process answers)."""

    def __init__(
        self,
        topology: Topology,
        *,
        heal_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.topology = topology
        self.heal_timeout_s = heal_timeout_s
        self.clock = clock
        self.sleep = sleep
        self.applied: list[Applied] = []

    def resolve(self, fault: Fault) -> str:
        if fault.target.startswith("@"):
            roles = self.topology.kafka_roles()
            return roles[fault.target[1:]]
        return fault.target

    def apply(self, fault: Fault) -> Applied:
        target = self.resolve(fault)
        started = self.clock()
        if fault.kind == "stop":
            self.topology.stop(target)
            self.sleep(fault.down_s)
            self.topology.cont(target)
        elif fault.kind == "kill":
            self.topology.kill(target)
            self.sleep(fault.down_s)
            self.topology.start(target)
        else:  # restart: killed and started at once (the gateway, PostgreSQL's immediate restart)
            self.topology.kill(target)
            self.topology.start(target)
        recovered: float | None
        try:
            self.topology.wait_healthy(self.heal_timeout_s)
            recovered = self.clock()
        except TimeoutError:
            recovered = None
        applied = Applied(fault, target, started, recovered)
        self.applied.append(applied)
        return applied
