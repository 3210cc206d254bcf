"""A throwaway PostgreSQL cluster for local development and tests (no Docker).

``LocalPostgres`` runs ``initdb`` into a temp dir and starts the ``postgres`` server binary directly
as a child process (not ``pg_ctl start``, which would daemonize and detach it from us), listening on
127.0.0.1 only, with its unix socket inside the data dir and ``trust`` auth for the ``postgres``
superuser.

Running as root: PostgreSQL refuses to run as root, so the data dir is chowned to the ``postgres``
OS user (or a system user ``taper-pg`` created with ``useradd --system`` if ``postgres`` does not
exist) and initdb/postgres/pg_ctl run with that uid (``subprocess`` ``user=``/``group=``).

Process lifetime, from ``deploy.localstack.process``: own process group, an ``atexit`` hook that
SIGKILLs the server and removes the temp dir, and ``PR_SET_PDEATHSIG`` (set after the uid switch)
so that even a SIGKILLed Python parent takes the postmaster with it; its backends exit on
postmaster death by themselves.

CLI::

    python -m deploy.localstack.postgres run [--port 5432] [--data DIR] [--fast]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from deploy.localstack.process import (
    free_port,
    hard_kill,
    kill_at_exit,
    pdeathsig_preexec,
    run_foreground,
    signal_group,
    tail,
)

log = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT = 60.0
FALLBACK_OS_USER = "taper-pg"
T = TypeVar("T")


class PostgresLaunchError(RuntimeError):
    """PostgreSQL binaries missing or the server failed to start (message has the log tail)."""


# --------------------------------------------------------------------------------------------
# binaries / OS user
# --------------------------------------------------------------------------------------------


def _has_server_bins(bindir: Path) -> bool:
    return all((bindir / b).exists() for b in ("initdb", "postgres", "pg_ctl"))


def _version_key(p: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)


def _search_pg_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out and _has_server_bins(Path(out)):
                return Path(out)
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_bins(p)]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb and _has_server_bins(Path(initdb).parent):
        return Path(initdb).parent
    return None


def find_pg_bindir(install: bool = True) -> Path:
    """Directory with initdb/pg_ctl/postgres.

    ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``, else (Debian/Ubuntu,
    root, ``install=True``) ``apt-get update && apt-get install -y postgresql`` and look again.
    """
    found = _search_pg_bindir()
    if found:
        return found
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log.warning("PostgreSQL server binaries not found; installing with apt-get")
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
        ):
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if proc.returncode != 0:
                raise PostgresLaunchError(
                    f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
                )
        found = _search_pg_bindir()
        if found:
            return found
    raise PostgresLaunchError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: not via `pg_config "
        "--bindir`, not in /usr/lib/postgresql/*/bin, not on PATH"
        + ("" if install else " (auto-install disabled)")
        + ". Install them, e.g. `apt-get install postgresql`."
    )


def server_os_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as when we are root (None when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_OS_USER],
        check=False, capture_output=True, timeout=30,
    )  # fmt: skip
    try:
        return pwd.getpwnam(FALLBACK_OS_USER)
    except KeyError as exc:
        raise PostgresLaunchError(
            f"running as root and neither `postgres` nor `{FALLBACK_OS_USER}` OS user exists "
            "(useradd failed); PostgreSQL refuses to run as root"
        ) from exc


def run_sync(make_coro: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def _target() -> None:
        try:
            box["v"] = asyncio.run(make_coro())  # type: ignore[arg-type]
        except BaseException as exc:
            box["e"] = exc

    t = threading.Thread(target=_target, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]  # type: ignore[no-any-return,unused-ignore]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database_async(server_dsn: str, name: str, exist_ok: bool = False) -> None:
    """CREATE DATABASE ``name`` via asyncpg on ``server_dsn`` (plain ``postgresql://`` DSN)."""
    import asyncpg  # local: optional for the CLI

    conn = await asyncpg.connect(server_dsn, timeout=15)
    try:
        if exist_ok and await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name):
            return
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# LocalPostgres
# --------------------------------------------------------------------------------------------


class LocalPostgres:
    """Throwaway PostgreSQL on 127.0.0.1:``port`` (free port if None), superuser ``postgres``.

    ``fast=True`` turns off fsync/synchronous_commit/full_page_writes (tests only: a crash of the
    machine can corrupt the cluster). ``base_dir`` given → kept after ``stop()`` and reused by a
    later ``start()``; otherwise a temp dir that ``stop()`` removes.
    """

    def __init__(
        self,
        port: int | None = None,
        base_dir: Path | None = None,
        *,
        fast: bool = False,
        max_connections: int = 200,
        extra_config: dict[str, str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self.port = port or free_port()
        self._owns_dir = base_dir is None
        self.base_dir = (
            Path(tempfile.mkdtemp(prefix="taper-pg-")) if base_dir is None
            else Path(base_dir).resolve()
        )  # fmt: skip
        self.fast = fast
        self.max_connections = max_connections
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._bindir: Path | None = None
        self._user: pwd.struct_passwd | None = None
        kill_at_exit(self)

    # -- info
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, database: str = "postgres") -> str:
        """SQLAlchemy async DSN: ``postgresql+asyncpg://postgres@127.0.0.1:PORT/NAME``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def asyncpg_dsn(self, database: str = "postgres") -> str:
        """Plain libpq/asyncpg DSN: ``postgresql://postgres@127.0.0.1:PORT/NAME``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, max_bytes: int = 5000) -> str:
        return f"--- {self.log_path} (tail) ---\n{tail(self.log_path, max_bytes)}"

    # -- helpers
    def _bin(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return str(self._bindir / name)

    def _run(self, cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self._user is not None:
            kw.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=str(self.base_dir),
            env=self._env(),
            **kw,
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        if self._user is not None:
            env["HOME"] = str(self.base_dir)
            env["USER"] = env["LOGNAME"] = self._user.pw_name
        return env

    def _chown(self) -> None:
        if self._user is None:
            return
        uid, gid = self._user.pw_uid, self._user.pw_gid
        os.chown(self.base_dir, uid, gid)
        for root, dirs, files in os.walk(self.base_dir):
            for n in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(os.path.join(root, n), uid, gid)
        # the server user must be able to reach base_dir (e.g. not under /root with mode 0700)
        p = self.base_dir.parent
        while p != p.parent:
            if not os.stat(p).st_mode & 0o001:
                raise PostgresLaunchError(
                    f"{p} is not traversable by OS user {self._user.pw_name!r}; pick a base_dir "
                    "under /tmp or similar"
                )
            p = p.parent

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)
        self._chown()
        proc = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        if proc.returncode != 0:
            raise PostgresLaunchError(
                f"initdb failed (rc={proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.data_dir}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": "'128MB'",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        if self.fast:
            conf.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        conf.update(self.extra_config)
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# --- deploy/localstack/postgres.py ---\n")
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())

    # -- lifecycle
    def start(self) -> LocalPostgres:
        if self.is_running():
            return self
        self._user = server_os_user()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        else:
            self._chown()
        kw: dict[str, Any] = {}
        if self._user is not None:
            kw.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        cmd = [self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        with open(self.log_path, "ab") as out:
            # preexec (PDEATHSIG) runs after the uid switch in the child, so it is kept.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=pdeathsig_preexec(),
                env=self._env(), cwd=str(self.base_dir), **kw,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        log.info("postgres (pid %s) ready on 127.0.0.1:%s", self.proc.pid, self.port)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = "no attempt"
        while True:
            if not self.is_running():
                rc = self.proc.returncode if self.proc else None
                raise PostgresLaunchError(f"postgres exited early (rc={rc})\n{self.log_tail()}")
            try:
                run_sync(self._probe)
                return
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise PostgresLaunchError(
                    f"postgres not ready within {self.startup_timeout:.0f}s on port {self.port} "
                    f"(last probe: {last})\n{self.log_tail()}"
                )
            time.sleep(0.2)

    async def _probe(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.asyncpg_dsn(), timeout=2)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    def create_database(self, name: str, exist_ok: bool = False) -> str:
        """CREATE DATABASE ``name``; returns its SQLAlchemy DSN."""
        run_sync(lambda: create_database_async(self.asyncpg_dsn(), name, exist_ok))
        return self.dsn(name)

    def stop(self, timeout: float = 30.0) -> None:
        """``pg_ctl stop -m fast``; SIGKILL if that fails; then remove the temp dir (if ours)."""
        try:
            if self.is_running():
                assert self.proc is not None
                proc = self._run(
                    [
                        self._bin("pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(timeout)),
                    ],
                    timeout + 10,
                )
                try:
                    self.proc.wait(10 if proc.returncode == 0 else 1)
                except subprocess.TimeoutExpired:
                    log.warning("pg_ctl stop failed (%s); killing postgres", proc.stderr.strip())
                    hard_kill(self.proc)
        finally:
            if self._owns_dir and not self.is_running():
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (whole process group)."""
        if self.proc is not None:
            signal_group(self.proc, signal.SIGKILL)
            hard_kill(self.proc)

    def kill_for_exit(self) -> None:
        self.kill()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<LocalPostgres 127.0.0.1:{self.port} {state} dir={self.base_dir}>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.localstack.postgres")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a throwaway PostgreSQL in the foreground")
    run.add_argument("--port", type=int, default=5432)
    run.add_argument(
        "--data",
        type=Path,
        default=None,
        help="base dir (kept and reused). Default: temp dir, deleted on exit",
    )
    run.add_argument("--fast", action="store_true", help="fsync=off etc. (tests only)")
    run.add_argument(
        "--create-db",
        action="append",
        default=[],
        metavar="NAME",
        help="create this database after start (repeatable; existing ones kept)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    pg = LocalPostgres(port=args.port, base_dir=args.data, fast=args.fast)

    def _start() -> None:
        pg.start()
        for name in args.create_db:
            pg.create_database(name, exist_ok=True)

    return run_foreground(
        _start,
        pg.stop,
        lambda: f"DATABASE_URL={pg.dsn('postgres')}  (data: {pg.base_dir}, log: {pg.log_path})",
    )


if __name__ == "__main__":
    sys.exit(main())
