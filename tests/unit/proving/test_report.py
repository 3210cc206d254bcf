"""The report: a table row per fault target with its figures, the findings, and PNG plots."""

from __future__ import annotations

from pathlib import Path

from deploy.proving.checker import check
from deploy.proving.faults import Applied, Fault
from deploy.proving.report import Latency, Run, Sample, percentile, write
from tests.unit.proving.test_checker import good


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(100)], 99) == 98.0


def test_write_gives_a_table_per_target_and_plots(tmp_path: Path) -> None:
    run = Run(started=1000.0, population=3, duration_s=60, rounds=1, seed=5, commit="abc",
              topology="fake")  # fmt: skip
    run.applied = [
        Applied(Fault(10, "postgres", "postgres", "restart", 0), "postgres", 1010.0, 1014.0),
        Applied(Fault(20, "kafka", "@controller", "stop", 2), "kafka-1", 1020.0, None),
    ]
    run.samples = [Sample(t, t % 3, 1) for t in range(60)]
    run.latencies = [Latency(11.0, 0.8), Latency(50.0, 0.2), Latency(21.0, 3.0)]
    verdict = check(*good(), faults_applied=2)
    path = write(run, verdict, tmp_path, "proving-test")
    text = path.read_text()
    assert "| postgres | 1 | 0 | 0 | 1 | 4.00 | 4.00 | 0.80 | 3.00 |" in text
    assert "| kafka | 1 | 0 | 1 | 0 | - | - (1 never) | 0.20 | 3.00 |" in text
    assert "PASS" in text
    for name in ("latency", "lag", "outbox"):
        png = tmp_path / f"proving-test-{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert f"({png.name})" in text
