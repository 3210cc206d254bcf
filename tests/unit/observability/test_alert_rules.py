"""The alerting rules (deploy/observability/rules/taper.yml): valid, each alert tested firing and
not firing by ``promtool test rules`` (taper_test.yml), each with a runbook that exists and says
what an on-call engineer needs.

promtool comes from Debian's ``prometheus`` package (deploy/system-deps.sh installs it); without
it these tests skip locally and fail under ``make test`` (TAPER_REQUIRE_INTEGRATION=1) or on CI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.plugins.infra import unavailable

ROOT = Path(__file__).resolve().parents[3]
RULES_DIR = ROOT / "deploy" / "observability" / "rules"
RULES = RULES_DIR / "taper.yml"
# Not under rules/: Prometheus loads rules/*.yml (deploy/observability/prometheus.yml).
RULE_TESTS = ROOT / "deploy" / "observability" / "rule-tests" / "taper_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
# What every runbook must answer (its section headings).
RUNBOOK_SECTIONS = (
    "## What it means for patients",
    "## Confirm",
    "## Fix",
    "## Escalate",
)


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def promtool() -> str:
    found = shutil.which("promtool") or next(
        (p for p in ("/usr/bin/promtool",) if Path(p).exists()), None
    )
    if found is None:
        unavailable("promtool not found: deploy/system-deps.sh installs Debian's prometheus")
    assert found is not None
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_are_valid() -> None:
    proc = run("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_fires_and_stays_quiet_as_its_tests_say(tmp_path: Path) -> None:
    """promtool compares annotations whole; they are fixed text, so they are copied from the
    rules rather than repeated in every expected alert."""
    annotations = {name: rule["annotations"] for name, rule in alerts().items()}
    spec = yaml.safe_load(RULE_TESTS.read_text())
    spec["rule_files"] = [str(RULES)]
    for case in spec["tests"]:
        for check in case["alert_rule_test"]:
            for expected in check["exp_alerts"]:
                expected.setdefault("exp_annotations", annotations[check["alertname"]])
    filled = tmp_path / "taper_test.yml"
    filled.write_text(yaml.safe_dump(spec))
    proc = run("test", "rules", str(filled))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    spec = yaml.safe_load(RULE_TESTS.read_text())
    checks = [c for case in spec["tests"] for c in case["alert_rule_test"]]
    for name in alerts():
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it stays quiet"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_has_its_runbook(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    url = rule["annotations"]["runbook_url"]
    assert url == f"docs/runbooks/{name}.md"
    runbook = ROOT / url
    assert runbook.is_file(), f"{url} does not exist"
    text = runbook.read_text()
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{url} lacks '{section}'"
    confirm = text.split("## Confirm", 1)[1].split("\n## ", 1)[0]
    assert "taperctl " in confirm, f"{url}: Confirm gives no taperctl command"
