"""Measuring: wall/CPU samples, percentiles, the load average, worker pools, run records."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy (not idle, not iowait) since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float = field(default_factory=time.perf_counter)
    cpu: float = field(default_factory=time.process_time)
    busy: float = field(default_factory=machine_busy_s)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def phase(title: str) -> None:
    print(f"\n== {title}  (load average {load()})", flush=True)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def pct(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (no interpolation)."""
    ordered = sorted(xs)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def run_workers(n: int, concurrency: int, op: Callable[[int, int], Awaitable[None]]) -> None:
    """Run ``op(worker, i)`` for i in 0..n-1 on ``concurrency`` tasks sharing one counter."""
    indices = iter(range(n))

    async def worker(w: int) -> None:
        for i in indices:
            await op(w, i)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


def session_cpu_s(roots: frozenset[int]) -> float:
    """CPU seconds of this process and of ``roots`` (the Kafka JVM, the PostgreSQL postmaster)
    with their children and session (PostgreSQL backends call setsid(): matched by parent)."""
    ticks = 0
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        rest = raw.rsplit(")", 1)[1].split()  # fields 3.. : state ppid pgrp session ...
        pid, ppid, session = int(entry.name), int(rest[1]), int(rest[3])
        if pid == me or pid in roots or ppid in roots or session in roots:
            ticks += int(rest[11]) + int(rest[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Probe:
    """Wall, client CPU, machine busy CPU and (when we started them) our processes' CPU."""

    sessions: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self.sample = Sample()
        self.ours = session_cpu_s(self.sessions) if self.sessions else 0.0

    def neighbours_s(self, end: Probe) -> float | None:
        """Busy CPU of every other process on the machine meanwhile (None: cannot tell)."""
        if not self.sessions:
            return None
        busy = end.sample.busy - self.sample.busy
        return max(0.0, busy - (end.ours - self.ours))


@dataclass
class Run:
    step: str  # "A" or "B"
    variant: str  # baseline | reference | pipeline
    rep: int
    load: str  # 1/5/15-minute load average just before
    n: int
    seconds: float
    cpu_s: float  # this (client + service) process
    machine_s: float  # every core, every process
    neighbours_s: float | None  # every process but ours, Kafka and PostgreSQL
    latencies_ms: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    def per(self, seconds: float | None) -> str:
        return "n/a" if seconds is None else f"{1000 * seconds / self.n:.2f}"


def make_run(step: str, variant: str, rep: int, ld: str, n: int, a: Probe, b: Probe) -> Run:
    return Run(
        step,
        variant,
        rep,
        ld,
        n,
        b.sample.wall - a.sample.wall,
        b.sample.cpu - a.sample.cpu,
        b.sample.busy - a.sample.busy,
        a.neighbours_s(b),
    )


def show(run: Run) -> None:
    lat = (
        f"  p50 {pct(run.latencies_ms, 50):7.1f} ms  p99 {pct(run.latencies_ms, 99):7.1f} ms"
        if run.latencies_ms
        else ""
    )
    print(
        f"  {run.step} rep {run.rep} {run.variant:9} {run.n:>6} in {run.seconds:7.2f} s "
        f"{run.rate:8.0f}/s{lat}  client {run.per(run.cpu_s)} ms  machine "
        f"{run.per(run.machine_s)} ms  others {run.per(run.neighbours_s)} ms per event  "
        f"(load before {run.load})",
        flush=True,
    )
