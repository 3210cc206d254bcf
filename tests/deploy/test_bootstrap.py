"""Issue 15 item 6: `make install` on a machine whose python3.11 is externally managed (PEP 668, as
Debian 12's is) and which has no uv: the Makefile must create the venv with the standard library
and bootstrap uv INSIDE it, never `pip install` into the system interpreter.

The "system" python3.11 here is a wrapper around the real one that refuses `-m pip` the way PEP 668
makes pip refuse (Debian's own marker cannot be faked for an interpreter we do not own), on a PATH
without uv. Slow (uv from PyPI, then the dev install from uv's cache), so marked slow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REFUSING_PYTHON = """#!/bin/sh
# A system python3.11 under PEP 668: pip outside a venv is refused.
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "error: externally-managed-environment" >&2
  exit 1
fi
exec {real} "$@"
"""


def _system(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "system-bin"
    bin_dir.mkdir()
    real = getattr(sys, "_base_executable", sys.executable)
    wrapper = bin_dir / "python3.11"
    wrapper.write_text(REFUSING_PYTHON.format(real=real))
    wrapper.chmod(0o755)
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "uv").exists()  # our python3.11 comes first: it shadows others
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env["PATH"] = os.pathsep.join([str(bin_dir), *keep])
    return env


def test_the_refusing_python_really_refuses(tmp_path: Path) -> None:
    env = _system(tmp_path)
    assert shutil.which("uv", path=env["PATH"]) is None
    done = subprocess.run(
        ["python3.11", "-m", "pip", "install", "uv"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "externally-managed" in done.stderr


def test_make_install_bootstraps_uv_inside_the_venv(tmp_path: Path) -> None:
    env = _system(tmp_path)
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"VENV={venv}", "PYTHON=python3.11"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (venv / "bin" / "uv").exists(), "uv lives in the project's venv"
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import services, fastapi, pytest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
