"""The Grafana dashboards (deploy/observability/dashboards/): one per concern, every query valid
PromQL (checked by promtool as recording rules), every metric it reads documented in
docs/metrics.md. tests/integration/observability/test_dashboards_served.py checks the names
against the /metrics of running services."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.observability.promql import metric_names
from tests.unit.observability.test_alert_rules import promtool

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "deploy" / "observability" / "dashboards").glob("*.json"))
METRICS_DOC = ROOT / "docs" / "metrics.md"


def queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)`", METRICS_DOC.read_text(), re.M))


def test_one_dashboard_per_concern() -> None:
    assert [p.name for p in DASHBOARDS] == ["api.json", "patient-safety.json", "pipeline.json"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"].startswith("Taper: ") and board["panels"]
        assert all(p["targets"] for p in board["panels"])


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:check:{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries())
    ]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("board", "title", "expr"), queries())
def test_every_metric_a_panel_reads_is_documented(board: str, title: str, expr: str) -> None:
    read = metric_names(expr)
    assert read, f"{board} / {title}: reads no metric"
    names = read - {"up"}  # Prometheus' own
    base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    assert base <= documented(), f"{board} / {title}: {base - documented()} not in metrics.md"


def test_the_name_reader_reads_names() -> None:
    expr = (
        'sum by (job, le) (rate(a_b_bucket{x="y{z}"}[5m])) / on (job) c '
        "or vector(0) unless d offset 5m"
    )
    assert metric_names(expr) == {"a_b_bucket", "c", "d"}
