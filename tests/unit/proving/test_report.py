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


def test_latency_is_per_episode_from_the_latest_red_before_its_first_page() -> None:
    from deploy.proving.run import page_latencies

    def page(episode: str, at: str, level: int = 1, cl: str = "0/0") -> dict[str, object]:
        return {"episode_id": episode, "patient_id": "p", "level": level, "cycle_loop": cl,
                "received_at": at}  # fmt: skip

    t0 = 1_000.0
    reds = [("p", 1_010.0), ("p", 1_020.0), ("p", 1_100.0)]
    webhook = [
        page("e1", "1970-01-01T00:17:03+00:00"),  # 1023: after the REDs at 1010 and 1020
        page("e1", "1970-01-01T00:17:05+00:00", level=2),  # not a first page
        page("e1", "1970-01-01T00:17:01+00:00", cl="1/0"),  # a later cycle's page
        page("e2", "1970-01-01T00:18:21+00:00"),  # 1101
    ]
    lat = page_latencies(reds, webhook, t0)
    assert [(x.t, x.seconds) for x in lat] == [(20.0, 3.0), (100.0, 1.0)]
