"""The container image (deploy/container/Dockerfile), checked without a Docker engine: parsed with
dockerfile-parse, linted with hadolint, its lock compared with pyproject.toml by compiling it again.
The slow test that replays its install step and starts every service is in test_container_serve.py.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
LOCK = ROOT / "deploy" / "container" / "requirements.lock"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cc ", "pip install", "uv ", "apt-get")


def stages() -> list[list[dict[str, str]]]:
    """The Dockerfile's instructions split into its stages (FROM starts one)."""
    parser = DockerfileParser(path=str(DOCKERFILE))
    out: list[list[dict[str, str]]] = []
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(instr)
    return out


def final_stage() -> list[dict[str, str]]:
    return stages()[-1]


def test_base_image_is_a_pinned_slim_python_311() -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    (arg,) = [i["value"] for i in parser.structure if i["instruction"] == "ARG"]
    name, base = arg.split("=", 1)
    assert name == "PYTHON_IMAGE"
    assert base.startswith("python:3.11.") and base.endswith("-slim-bookworm"), base
    major, minor, patch = base.split(":")[1].split("-")[0].split(".")
    assert (major, minor) == ("3", "11") and patch.isdigit(), "a full version tag, not 3.11"
    assert [i["value"].split()[0] for i in parser.structure if i["instruction"] == "FROM"] == [
        "${PYTHON_IMAGE}",
        "${PYTHON_IMAGE}",
    ]


def test_runs_as_a_non_root_user() -> None:
    users = [i["value"] for i in final_stage() if i["instruction"] == "USER"]
    assert users, "the final stage names a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, "numeric, high uid (runAsNonRoot can check it)"


def test_no_build_tools_and_no_installs_in_the_final_stage() -> None:
    runs = [i["value"] for i in final_stage() if i["instruction"] == "RUN"]
    for run in runs:
        for tool in BUILD_TOOLS:
            assert tool not in run, f"final stage runs {tool!r}: {run}"
    copies = [i["value"] for i in final_stage() if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=build /opt/venv") for c in copies)


def test_installs_only_from_the_hashed_lock() -> None:
    runs = [i["value"] for i in stages()[0] if i["instruction"] == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1
    assert "--require-hashes" in installs[0] and "-r /tmp/requirements.lock" in installs[0]
    assert "--no-deps" in installs[0], "nothing beyond the lock, not even a transitive surprise"


def test_healthcheck_stop_signal_and_entrypoint() -> None:
    by_name = {i["instruction"]: i["value"] for i in final_stage()}
    assert "run.py" in by_name["HEALTHCHECK"] and "healthcheck" in by_name["HEALTHCHECK"]
    assert by_name["STOPSIGNAL"] == "SIGTERM"
    assert by_name["ENTRYPOINT"] == '["python", "/app/run.py"]', "exec form: python is PID 1"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _requirements(text: str) -> list[str]:
    """The lock without its comments (uv writes the command and "# via" lines)."""
    return [
        ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


@pytest.mark.slow
def test_lock_matches_pyproject(tmp_path: Path) -> None:
    """Compiled again from pyproject.toml it is the same lock (`make lock` refreshes it)."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        uv = Path(shutil.which("uv") or "uv")
    fresh = tmp_path / "requirements.lock"
    cmd = [str(uv), *lock_command_args(), "-o", str(fresh)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _requirements(LOCK.read_text()) == _requirements(fresh.read_text()), (
        "deploy/container/requirements.lock is stale: run `make lock`"
    )


def lock_command_args() -> list[str]:
    """`make lock`'s arguments (the Makefile's LOCK_ARGS), so the test compiles the same way."""
    makefile = (ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("LOCK_ARGS :="))
    return shlex.split(line.split(":=", 1)[1])
