"""deploy/localstack/process.py: a child never outlives the Python process that started it.

Each guarantee is checked on real processes (``sleep``): a registered launcher is killed at
interpreter exit, PDEATHSIG takes a child along when its parent is SIGKILLed, and a process tree is
signalled down to a grandchild that left the group (as PostgreSQL backends do).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.localstack.process import free_port, port_open, signal_tree, tree_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
ROOT = Path(__file__).resolve().parents[3]


def alive(pid: int) -> bool:
    """Running (a zombie no one reaped, e.g. under a PID 1 that does not reap, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """pids to SIGKILL after the test whatever happened (a failing test leaves no sleeper)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def python(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_registered_launcher_is_killed_when_the_interpreter_exits(leftovers: list[int]) -> None:
    # The child is started without PDEATHSIG (plain Popen), so only the atexit hook can stop it.
    script = python(
        """
        import subprocess
        from deploy.localstack.process import hard_kill, kill_at_exit

        class Launcher:
            def __init__(self):
                self.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
                kill_at_exit(self)

            def kill_for_exit(self):
                hard_kill(self.proc)

        launcher = Launcher()
        print(launcher.proc.pid, flush=True)
        """
    )
    assert script.stdout is not None
    child = int(script.stdout.readline())
    leftovers.append(child)
    assert script.wait(30) == 0
    assert gone_within(child, 5), "the launcher's child outlived the interpreter"


def test_a_spawned_child_dies_with_its_sigkilled_parent(leftovers: list[int]) -> None:
    # SIGKILL: no atexit hook runs, PR_SET_PDEATHSIG alone takes the child along.
    script = python(
        """
        import time
        from pathlib import Path
        from tempfile import mkdtemp
        from deploy.localstack.process import spawn

        proc = spawn(["sleep", "60"], Path(mkdtemp()) / "sleep.log")
        print(proc.pid, flush=True)
        time.sleep(60)
        """
    )
    assert script.stdout is not None
    child = int(script.stdout.readline())
    leftovers.extend([child, script.pid])
    assert alive(child)
    script.kill()
    script.wait(10)
    assert gone_within(child, 5), "the spawned child outlived its SIGKILLed parent"


def test_signal_tree_reaches_a_grandchild_that_left_the_process_group(
    leftovers: list[int],
) -> None:
    shell = subprocess.Popen(
        ["sh", "-c", "setsid sleep 60 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert shell.stdout is not None
    grandchild = int(shell.stdout.readline())
    leftovers.extend([grandchild, shell.pid])
    deadline = time.monotonic() + 5
    while grandchild not in tree_pids(shell.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # setsid may not have run yet
    assert {shell.pid, grandchild} <= set(tree_pids(shell.pid))
    signal_tree(shell.pid, signal.SIGKILL)
    shell.wait(10)
    assert gone_within(grandchild, 5)


def test_port_open_tells_a_listening_port_from_a_free_one() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert port_open(server.getsockname()[1])
    assert not port_open(free_port())
