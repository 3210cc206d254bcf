"""Import boundaries and code hygiene, enforced on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_import_boundaries_hold() -> None:
    """Services never import each other; domains import no framework; contracts import nothing;
    nothing in services imports the exact solver. Every declared contract is checked and kept."""
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    declared = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"Contracts: {declared} kept, 0 broken" in result.stdout


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_asyncapi_documents_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.asyncapi", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "contracts", "services", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_subscribes_to_exactly_what_contracts_say_it_consumes() -> None:
    """contracts/topics.py is the map a newcomer reads: it must match the running code."""
    from contracts import topics_consumed_by
    from services.group_matching.entrypoints.consumers import SUBSCRIPTIONS as group_matching
    from services.monitoring.entrypoints.consumers import SUBSCRIPTIONS as monitoring
    from services.notifications.entrypoints.consumers import SUBSCRIPTIONS as notifications
    from services.scheduler.entrypoints.consumers import SUBSCRIPTIONS as scheduler

    for service, subscriptions in {
        "scheduler": scheduler,
        "monitoring": monitoring,
        "notifications": notifications,
        "group_matching": group_matching,
    }.items():
        subscribed = sorted(s.topic.name for s in subscriptions)
        assert subscribed == sorted(t.name for t in topics_consumed_by(service)), service
