"""`taperctl routing` answers the PolicyUnroutable alert's question from the database: on a fresh
install the shipped policies name on-call schedules that do not exist, so both are listed with
the reason (exit 1: something to look at)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _taperctl(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TAPER_ENV": "development",
        "NOTIFICATIONS_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.taperctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(300)
def test_a_fresh_install_lists_the_shipped_policies_as_unroutable(tmp_path: Path) -> None:
    db = tmp_path / "notifications.db"
    migrated = _taperctl("migrations", "upgrade", "notifications", db=db)
    assert migrated.returncode == 0, migrated.stderr
    listed = _taperctl("routing", db=db)
    assert listed.returncode == 1, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["POLICY", "VERSION", "USED_BY", "PROBLEMS"]
    assert {line.split()[0] for line in lines[1:]} == {"red-default", "amber-default"}
    assert "missing_schedule" in listed.stdout
