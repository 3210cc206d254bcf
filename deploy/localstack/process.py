"""Process supervision shared by the local launchers (Kafka, PostgreSQL, nginx, Prometheus, Zipkin).

A server started here must never outlive the Python process that started it:

* every child runs in its own process group (so Ctrl-C in a terminal does not hit it half-way, and
  :func:`signal_group` can signal the whole group);
* :func:`kill_at_exit` registers a launcher whose :meth:`ExitKillable.kill_for_exit` an
  :mod:`atexit` hook calls (SIGKILL its children, remove temporary directories), which covers
  normal interpreter exit, ``sys.exit`` and uncaught exceptions;
* on Linux :func:`spawn` additionally starts the child with ``PR_SET_PDEATHSIG=SIGKILL`` when it is
  spawned from the main thread, so even a SIGKILL of the Python parent (where atexit cannot run)
  takes the child with it. (PDEATHSIG fires when the *spawning thread* exits, so it is not used
  for spawns from other threads; the atexit hook still covers those.)

Also here: free ports, log tails, the Java and Maven look-ups of the JVM launchers, an HTTP
readiness wait, and :func:`run_foreground` for the launchers' command lines.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from deploy.localstack.logrotate import RotatingLog

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------
# the JVM launchers' look-ups: cache directory, java, Maven-resolved jars
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$TAPER_CACHE_DIR`` or ``~/.cache/taper-backend``."""
    env = os.environ.get("TAPER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "taper-backend"


def java_executable(error: type[Exception] = RuntimeError) -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH; raises ``error`` when there is neither."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise error("`java` (17+) is not on PATH and JAVA_HOME is not set")
    return java


def maven_dependencies(
    pom: Path, *, name: str, prefix: str, expect: str, error: type[Exception] = RuntimeError
) -> Path:
    """Resolve ``pom``'s runtime dependencies once (``mvn dependency:copy-dependencies``).

    Returns ``<cache_root>/<prefix>-<hash of pom.xml>``. A ``.complete`` marker is written only
    after ``mvn`` succeeded and a jar matching ``expect`` is there, and an ``fcntl`` lock makes
    concurrent callers (pytest-xdist workers, parallel shells) wait for one resolver instead of
    racing. ``name`` names the jars in messages; failures raise ``error``.
    """
    pom = Path(pom).resolve()
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    lib_dir = root / f"{prefix}-{digest}"
    marker = lib_dir / ".complete"
    if marker.exists():
        return lib_dir
    with open(root / f"{prefix}-{digest}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if marker.exists():  # another process finished while we waited
                return lib_dir
            mvn = shutil.which("mvn")
            if mvn is None:
                raise error(
                    f"Maven (`mvn`) is not on PATH; it is needed once to resolve the {name} jars "
                    f"from {pom} (apt-get install maven)"
                )
            if lib_dir.exists():  # leftover of an interrupted run
                shutil.rmtree(lib_dir)
            lib_dir.mkdir(parents=True)
            cmd = [
                mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={lib_dir}", "-DincludeScope=runtime",
            ]  # fmt: skip
            log.info("resolving %s jars: %s", name, " ".join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0 or not any(lib_dir.glob(expect)):
                out = (proc.stdout + proc.stderr)[-4000:]
                shutil.rmtree(lib_dir, ignore_errors=True)
                raise error(f"mvn failed to resolve {name} jars (rc={proc.returncode}):\n{out}")
            marker.write_text(f"{pom}\n{digest}\n")
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return lib_dir


# --------------------------------------------------------------------------------------------
# ports and logs
# --------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (small race window; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (all sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on ``host:port`` (0.5 s connect timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tail(path: Path, max_bytes: int = 6000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"


# --------------------------------------------------------------------------------------------
# starting and signalling children
# --------------------------------------------------------------------------------------------


def pdeathsig_preexec() -> Callable[[], None] | None:
    """preexec_fn that makes the child die with SIGKILL when the spawning thread dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def _preexec() -> None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:  # parent already gone between fork and prctl
            os._exit(1)

    return _preexec


def spawn(
    cmd: list[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pdeathsig_preexec(),  # only prctl(): no locks taken in the child
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
        )


def spawn_rotating(
    cmd: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, its output pumped into a :class:`RotatingLog`."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(env) if env is not None else None,
    )
    assert proc.stdout is not None
    RotatingLog(log_path).pump(proc.stdout)
    return proc


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the child's process group (falls back to the child itself)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def terminate(proc: subprocess.Popen[Any], timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
    """SIGTERM, wait ``timeout`` s, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %s ignored SIGTERM for %.0fs; sending SIGKILL", proc.pid, timeout)
            signal_group(proc, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def hard_kill(proc: subprocess.Popen[Any]) -> int | None:
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    return proc.returncode


def tree_pids(root: int) -> list[int]:
    """``root``, its process group and all their descendants (PostgreSQL backends call
    setsid(), so the group alone misses them)."""
    parents: dict[int, int] = {}
    groups: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])  # ppid
                groups[int(entry.name)] = int(fields[2])  # pgrp
    found = {root} | {pid for pid, pgrp in groups.items() if pgrp == root}
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def signal_tree(root: int, sig: int) -> None:
    """Send ``sig`` to every process of :func:`tree_pids` (gone ones are skipped)."""
    for pid in tree_pids(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_http_ok(
    proc: subprocess.Popen[Any],
    url: str,
    *,
    what: str,
    log_path: Path,
    timeout: float,
    interval: float,
    error: type[Exception] = RuntimeError,
) -> None:
    """Poll ``url`` until it answers 200; raise ``error`` if ``proc`` exits or time runs out
    (then ``proc`` is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{what} exited with {proc.returncode} (log: {log_path})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    hard_kill(proc)
    raise error(f"{what} not ready within {timeout}s (log: {log_path})")


class ChildServer:
    """A server run as one child process (``proc``): graceful :meth:`stop` and :meth:`kill`."""

    proc: subprocess.Popen[bytes] | None = None
    stop_timeout: float = 15.0

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, self.stop_timeout)

    def kill(self) -> None:
        if self.proc is not None:
            hard_kill(self.proc)


# --------------------------------------------------------------------------------------------
# nothing outlives the interpreter
# --------------------------------------------------------------------------------------------


class ExitKillable(Protocol):
    def kill_for_exit(self) -> None:
        """SIGKILL every child still running and remove temporary data (no waiting, no raise)."""


# Everything still alive at interpreter exit gets killed here (see module docstring).
_LIVE: weakref.WeakSet[ExitKillable] = weakref.WeakSet()


def kill_at_exit(launcher: ExitKillable) -> None:
    """Call ``launcher.kill_for_exit()`` at interpreter exit if it is still alive then."""
    _LIVE.add(launcher)


def _atexit_cleanup() -> None:
    for obj in list(_LIVE):
        with contextlib.suppress(Exception):
            obj.kill_for_exit()


atexit.register(_atexit_cleanup)


# --------------------------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------------------------


def run_foreground(
    start: Callable[[], Any], stop: Callable[[], None], banner: Callable[[], str]
) -> int:
    """Start, print the banner, block until SIGINT/SIGTERM, stop cleanly. Shared by the CLIs."""
    stop_event = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        start()
        print(banner(), f"(ready in {time.monotonic() - t0:.1f}s; Ctrl-C to stop)", flush=True)
        while not stop_event.wait(1.0):
            pass
        print("stopping ...", flush=True)
        return 0
    finally:
        stop()
        for s, h in old.items():
            signal.signal(s, h)
