"""Writing a benchmark's results file: where it goes, what it says about the code measured, and
the hand-written Interpretation a re-run must not lose. Light on purpose (no service imports),
so a benchmark can use it without loading the stack it does not measure."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
INTERPRETATION = "## Interpretation"
PLACEHOLDER = "(written by hand after reading the figures)"


def git_state() -> str:
    def git(*args: str) -> str:
        try:
            # rstrip only: porcelain lines start with a status column that may be a space
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.rstrip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "services", "contracts").splitlines()
    if not dirty:
        return f"commit {head}, services/ and contracts/ clean"
    return f"commit {head} plus uncommitted changes: " + ", ".join(
        f"`{line[3:]}` ({line[:2].strip()})" for line in dirty
    )


def keep_interpretation(text: str, path: Path) -> str:
    """Re-running keeps the hand-written Interpretation of an existing results file."""
    if not path.exists() or INTERPRETATION not in path.read_text():
        return text
    old = path.read_text().split(INTERPRETATION, 1)[1]
    if PLACEHOLDER in old and len(old.strip()) < 60:
        return text
    return text.split(INTERPRETATION, 1)[0] + INTERPRETATION + old


def write_results(text: str, output: Path | None, name: str, started: datetime) -> None:
    """Print ``text`` and write it to ``output`` (``-``: nowhere; default
    ``results/<name>-<date>.md``), keeping the Interpretation already written there."""
    print("\n" + text)
    if str(output) == "-":
        return
    path = output or RESULTS_DIR / f"{name}-{started:%Y-%m-%d}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(keep_interpretation(text, path))
    print(f"written to {path}")
