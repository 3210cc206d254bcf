"""``make prove``: bring up the cluster topology, drive the population through the gateway while
the seeded fault schedule runs, inject poison and duplicate copies, wait for quiescence, collect,
check, and write ``bench/results/proving-<date>.md`` with its plots. Exit 1 on any finding.

python -m deploy.proving --n 1000 --duration 1800 --rounds 10 --seed 14
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.proving import collect, faults, poison
from deploy.proving.checker import Verdict, check
from deploy.proving.collect import read_topics
from deploy.proving.ledger import Ledger
from deploy.proving.population import Population
from deploy.proving.report import Latency, Run, Sample, summary, write
from deploy.proving.topology import Topology

log = logging.getLogger("proving")
ROOT = Path(__file__).resolve().parents[2]


def _commit() -> str:
    try:

        def git(*args: str) -> str:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
            done.check_returncode()
            return done.stdout.strip()

        out = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def _backlog(topology: Topology, patients: set[str]) -> tuple[int, int]:
    """(summed consumer lag, unpublished outbox rows) now."""
    lag = sum((await collect.consumer_lag(topology.endpoints.kafka_bootstrap)).values())
    pending = 0
    for url in topology.endpoints.database_urls.values():
        rows = await collect.query_rows(
            url, "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        pending += int(rows[0][0])
    return lag, pending


async def _sampler(topology: Topology, run: Run, stop: asyncio.Event, every_s: float) -> None:
    while not stop.is_set():
        try:
            lag, pending = await _backlog(topology, set())
            run.samples.append(Sample(time.time() - run.started, lag, pending))
        except Exception as exc:  # a fault is on: the sample is missing, not the run
            log.debug("sample failed: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


async def _fault_loop(
    executor: faults.Executor, schedule: list[faults.Fault], t0: float, stop: asyncio.Event
) -> None:
    for fault in schedule:
        wait = t0 + fault.at_s - time.time()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return
            except TimeoutError:
                pass
        try:
            applied = await asyncio.to_thread(executor.apply, fault)
        except Exception as exc:  # a fault that could not be applied is reported, not hidden
            log.error("fault %s on %s failed: %s", fault.kind, fault.target, exc)
            continue
        took = "never" if applied.recovery_s is None else f"{applied.recovery_s:.1f} s"
        log.info("fault %s %s (%s): recovered %s", fault.kind, applied.target, fault.group, took)


async def quiesce(topology: Topology, timeout_s: float, settle_s: float) -> bool:
    """Until lag and outbox backlog are zero twice in a row ``settle_s`` apart."""
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        try:
            lag, pending = await _backlog(topology, set())
        except Exception:
            lag, pending = 1, 1
        if lag == 0 and pending == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle_s:
                return True
        else:
            quiet_since = None
        await asyncio.sleep(1.0)
    return False


async def prove(
    topology: Topology,
    *,
    n: int,
    duration_s: float,
    rounds: int,
    seed: int,
    poison_per_topic: int = 2,
    copies: int = 20,
    concurrency: int = 8,
    settle_s: float | None = None,
    quiesce_timeout_s: float = 1200.0,  # N=1000 after 70 faults drained in about 10 minutes
    topology_name: str = "make run-cluster",
) -> tuple[Run, Verdict, Ledger]:
    ledger = Ledger()
    t0 = time.time()
    run = Run(started=t0, population=n, duration_s=duration_s, rounds=rounds, seed=seed,
              commit=_commit(), topology=topology_name)  # fmt: skip
    reds: list[tuple[str, float]] = []
    population = Population(
        topology.endpoints.gateway_url, ledger, n, seed, concurrency=concurrency, t0=t0,
        on_red=lambda p, at: reds.append((p, at)), clock_scale=topology.endpoints.clock_scale,
    )  # fmt: skip
    schedule = faults.schedule(topology.targets(), rounds=rounds, duration_s=duration_s, seed=seed)
    executor = faults.Executor(topology)
    stop = asyncio.Event()
    bootstrap = topology.endpoints.kafka_bootstrap
    await poison.inject_poison(bootstrap, ledger, poison_per_topic, seed)
    sampler = asyncio.create_task(_sampler(topology, run, stop, 2.0))
    fault_task = asyncio.create_task(_fault_loop(executor, schedule, t0, stop))
    await population.run(duration_s)
    await fault_task  # the schedule fits in the duration; a late heal is waited for
    # Copies of valid events already consumed: every consumer must skip them (and say so).
    patients = ledger.patients()
    on_topics = [(r, raw) for r, raw in await read_topics(bootstrap, poison.consumed_topics())
                 if r.key in patients and r.payload is not None]  # fmt: skip
    picked = on_topics[:: max(1, len(on_topics) // copies)][:copies] if on_topics else []
    await poison.inject_copies(bootstrap, [(r.topic, r.key, raw) for r, raw in picked])
    # The last steps by hand take effect "today" on the service clock: wait a service day.
    day_s = 86400 / max(topology.endpoints.clock_scale, 1e-9)
    settle = settle_s if settle_s is not None else min(max(10.0, day_s), 120.0)
    quiet = await quiesce(topology, quiesce_timeout_s, settle)
    stop.set()
    await sampler
    run.applied = list(executor.applied)
    evidence, _ = await collect.collect(topology, ledger)
    run.latencies = page_latencies(reds, evidence.sink.get("webhook", []), t0)
    verdict = check(ledger, evidence, faults_applied=len(run.applied))
    if not quiet:
        verdict.add("lag", f"not quiet within {quiesce_timeout_s:.0f}s (lag or outbox left)")
    for a in run.applied:
        if a.recovered is None:
            verdict.add("recovery", f"{a.target} ({a.fault.kind}) never answered again")
    for label, count in sorted(ledger.refused.items()):
        if label.endswith(" 500"):
            verdict.add("server_error", f"{count} x {label} (a 5xx other than 502-504)")
    verdict.counts["copies_injected"] = len(picked)
    verdict.counts["requests_accepted"] = len(ledger.accepted)
    verdict.counts["requests_refused_or_ambiguous"] = sum(ledger.refused.values())
    return run, verdict, ledger


def page_latencies(
    reds: list[tuple[str, float]], webhook: list[dict[str, Any]], t0: float
) -> list[Latency]:
    """Report -> page for each episode: its first page (level 1, first cycle) against the
    latest RED report of its patient accepted before that page."""
    first: dict[str, tuple[str, float]] = {}  # episode -> (patient, received at)
    for r in webhook:
        at = collect.epoch_seconds(r.get("received_at"))
        if at is None or r.get("level") != 1 or r.get("cycle_loop") != "0/0":
            continue
        episode = str(r.get("episode_id"))
        if episode not in first or at < first[episode][1]:
            first[episode] = (str(r.get("patient_id")), at)
    by_patient: dict[str, list[float]] = {}
    for patient, at in reds:
        by_patient.setdefault(patient, []).append(at)
    out = []
    for patient, paged in first.values():
        before = [a for a in by_patient.get(patient, []) if a <= paged]
        if before:
            out.append(Latency(max(before) - t0, paged - max(before)))
    return sorted(out, key=lambda x: x.t)


def cluster_topology(clock_scale: float, base_dir: Path | None) -> AbstractContextManager[Any]:
    from deploy.localstack.cluster import LocalCluster  # make run-cluster's topology

    cluster = LocalCluster(base_dir, None, clock_scale)
    return _Up(cluster, cluster.up)


class _Up(AbstractContextManager[Any]):
    def __init__(self, topology: Any, up: Callable[[], Any]) -> None:
        self.topology, self._up = topology, up

    def __enter__(self) -> Any:
        try:
            self._up()
        except BaseException:
            self.topology.close()
            raise
        return self.topology

    def __exit__(self, *exc: object) -> None:
        self.topology.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="patients")
    p.add_argument("--duration", type=float, default=1800, help="seconds of load and faults")
    p.add_argument("--rounds", type=int, default=10, help="faults per target group")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--clock-scale", type=float, default=1440.0, help="1440: a day a minute")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--data", type=Path, default=None, help="cluster data (default: temp, removed)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("aiokafka", "kafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with cluster_topology(args.clock_scale, args.data) as topology:
        run, verdict, ledger = asyncio.run(
            prove(topology, n=args.n, duration_s=args.duration, rounds=args.rounds,
                  seed=args.seed, concurrency=args.concurrency)
        )  # fmt: skip
    stem = f"proving-{datetime.now(UTC):%Y-%m-%d-%H%M}"
    path = write(run, verdict, args.out, stem)
    ledger.save(args.out / f"{stem}-ledger.json")
    print(summary(verdict))
    print(f"report: {path}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
