"""``bench/results/proving-<date>.md`` and its plots: a table per fault target (rounds, kills,
events, lost, duplicates, recovery p50/max, report -> page latency p50/p99 during faults), the
checker's findings, and PNGs over time (latency, consumer lag, outbox backlog), faults marked."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.proving.checker import Verdict
from deploy.proving.faults import Applied


@dataclass(frozen=True)
class Sample:
    """One look at the system during the run (wall-clock seconds since the start)."""

    t: float
    consumer_lag: int
    outbox_backlog: int


@dataclass(frozen=True)
class Latency:
    """A RED report accepted at ``t`` and its first page at the sink ``seconds`` later."""

    t: float
    seconds: float


@dataclass
class Run:
    started: float  # wall clock (time.time()) at t = 0
    population: int
    duration_s: float
    rounds: int
    seed: int
    commit: str
    topology: str
    applied: list[Applied] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def during_faults(run: Run, latencies: Sequence[Latency], window_s: float = 30.0) -> list[float]:
    """Latencies of reports accepted while a fault was active or within ``window_s`` after."""
    spans = []
    for a in run.applied:
        start = a.started - run.started
        end = (a.recovered if a.recovered is not None else a.started) - run.started + window_s
        spans.append((start, end))
    return [x.seconds for x in latencies if any(s <= x.t <= e for s, e in spans)]


def fault_table(run: Run, verdict: Verdict) -> list[str]:
    by_group: dict[str, list[Applied]] = defaultdict(list)
    for a in run.applied:
        by_group[a.fault.group].append(a)
    lines = [
        "| target | rounds | kills | stops | restarts | recovery p50 s | recovery max s |"
        " report->page p50 s | report->page p99 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in sorted(by_group):
        applied = by_group[group]
        rec = [a.recovery_s for a in applied if a.recovery_s is not None]
        sub = Run(**{**run.__dict__, "applied": applied})
        lat = during_faults(sub, run.latencies)
        kinds = [a.fault.kind for a in applied]
        never = sum(1 for a in applied if a.recovered is None)
        lines.append(
            f"| {group} | {len(applied)} | {kinds.count('kill')} | {kinds.count('stop')} | "
            f"{kinds.count('restart')} | {_fmt(percentile(rec, 50))} | "
            f"{_fmt(max(rec) if rec else None)}{' (' + str(never) + ' never)' if never else ''}"
            f" | {_fmt(percentile(lat, 50))} | {_fmt(percentile(lat, 99))} |"
        )
    return lines


def markdown(run: Run, verdict: Verdict, plots: Sequence[Path]) -> str:
    c = verdict.counts
    events = c["dose_reduced"] + c["red_episodes"] + c["reports"]
    lines = [
        f"# Proving grounds run ({'PASS' if verdict.ok else 'FAIL'})",
        "",
        f"Commit `{run.commit}`, topology {run.topology}, population N={run.population}, "
        f"duration {run.duration_s:.0f} s, rounds per target {run.rounds}, seed {run.seed}.",
        "",
        "| events checked | lost | duplicates | other findings | faults applied |",
        "|---|---|---|---|---|",
        f"| {events} | {verdict.lost()} | {verdict.duplicates()} | "
        f"{len(verdict.findings) - verdict.lost() - verdict.duplicates()} | {len(run.applied)} |",
        "",
        "## Per fault target",
        "",
        *fault_table(run, verdict),
        "",
        "## Counts",
        "",
        *(f"- {k}: {n}" for k, n in sorted(c.items())),
        "",
        "## Findings",
        "",
        *(f"- **{f.check}**: {f.detail}" for f in verdict.findings[:200]),
        *(["- none"] if verdict.ok else []),
        *([f"- ... and {len(verdict.findings) - 200} more"] if len(verdict.findings) > 200 else []),
        "",
        "## Plots",
        "",
        *(f"![{p.stem}]({p.name})" for p in plots),
        "",
    ]
    return "\n".join(lines)


def plot(run: Run, out_dir: Path, stem: str) -> list[Path]:
    """Three PNGs over time, every fault marked by a shaded span and its target's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[float], list[float], str]] = {
        "latency": (
            [x.t for x in run.latencies],
            [x.seconds for x in run.latencies],
            "report -> page (s)",
        ),
        "lag": ([s.t for s in run.samples], [float(s.consumer_lag) for s in run.samples], "lag"),
        "outbox": (
            [s.t for s in run.samples],
            [float(s.outbox_backlog) for s in run.samples],
            "outbox rows pending",
        ),
    }
    paths = []
    for name, (xs, ys, label) in series.items():
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(xs, ys, "." if name == "latency" else "-", markersize=3)
        for a in run.applied:
            start = a.started - run.started
            end = (a.recovered if a.recovered is not None else a.started + 5) - run.started
            ax.axvspan(start, max(end, start + 0.5), color="red", alpha=0.15)
            ax.annotate(
                a.target, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                rotation=90, va="top",
            )  # fmt: skip
        ax.set_xlabel("seconds since start")
        ax.set_ylabel(label)
        ax.set_title(f"{label} (faults shaded)")
        fig.tight_layout()
        path = out_dir / f"{stem}-{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def write(run: Run, verdict: Verdict, out_dir: Path, stem: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot(run, out_dir, stem)
    path = out_dir / f"{stem}.md"
    path.write_text(markdown(run, verdict, plots))
    return path


def summary(verdict: Verdict) -> str:
    return (
        f"{'PASS' if verdict.ok else 'FAIL'}: lost {verdict.lost()}, duplicates "
        f"{verdict.duplicates()}, findings {len(verdict.findings)}; "
        + ", ".join(f"{k} {n}" for k, n in sorted(verdict.counts.items()))
    )


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None
