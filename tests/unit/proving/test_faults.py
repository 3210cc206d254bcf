"""The fault schedule is seeded, covers every target group the asked number of rounds, names the
controller and a DLQ leader among broker faults; the executor applies it through the Topology."""

from __future__ import annotations

from collections import Counter

from deploy.proving.faults import Executor, schedule
from tests.unit.proving.fakes import FakeTopology


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    targets = FakeTopology().targets()
    a = schedule(targets, rounds=10, duration_s=600, seed=7)
    assert a == schedule(targets, rounds=10, duration_s=600, seed=7)
    assert a != schedule(targets, rounds=10, duration_s=600, seed=8)


def test_every_group_gets_its_rounds_in_time_order_within_the_run() -> None:
    faults = schedule(FakeTopology().targets(), rounds=10, duration_s=600, seed=1)
    assert Counter(f.group for f in faults) == {
        "scheduler": 10, "kafka": 10, "postgres": 10, "gateway": 10,
    }  # fmt: skip
    assert all(0 < f.at_s < 600 for f in faults)
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    # every replica of a service is killed (so whichever holds the relay/timer lock is too)
    assert {f.target for f in faults if f.group == "scheduler"} == {"scheduler-1", "scheduler-2"}
    kafka = [f for f in faults if f.group == "kafka"]
    assert {"@controller", "@dlq_leader"} <= {f.target for f in kafka}
    assert {f.kind for f in kafka} == {"kill", "stop"}
    assert {f.kind for f in faults if f.group in ("postgres", "gateway")} == {"restart"}


def test_executor_resolves_roles_and_measures_recovery() -> None:
    topology = FakeTopology()
    ticks = iter([10.0, 12.5, 20.0, 21.0])
    executor = Executor(topology, clock=lambda: next(ticks), sleep=lambda _: None)
    [stop] = [f for f in schedule(topology.targets(), rounds=2, duration_s=60, seed=3)
              if f.target == "@dlq_leader"]  # fmt: skip
    applied = executor.apply(stop)
    assert applied.target == "kafka-3" and applied.recovery_s == 2.5
    assert topology.calls == [("stop", "kafka-3"), ("cont", "kafka-3"), ("wait_healthy", "")]
    topology.heals = False
    [kill] = [f for f in schedule(topology.targets(), rounds=1, duration_s=60, seed=3)
              if f.group == "scheduler"]  # fmt: skip
    never = executor.apply(kill)
    assert never.recovered is None and never.recovery_s is None
    assert topology.calls[3:5] == [("kill", kill.target), ("start", kill.target)]
