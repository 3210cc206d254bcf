"""Local nginx API gateway in front of the four services (see deploy/gateway/nginx.conf.template).

``LocalGateway(port, upstreams={"scheduler": 8001, ...}).start()`` renders the template into a run
dir, checks it with ``nginx -t``, and runs ``nginx -p RUN_DIR -c CONF -g 'daemon off;'`` as a child
process (own process group, atexit + PDEATHSIG cleanup like deploy.localstack.kafka).

Root vs. unprivileged: an unprivileged nginx master cannot switch users and ignores ``user`` (with a
warning), so the directive is omitted. As root, the master would start workers as ``nobody`` by
default; we keep that (workers should not run as root) and make the run dir traversable (0755) so
the workers can use the temp paths, which the master creates and chowns to the worker user itself.
Logs and the listen socket are opened by the master before workers start, so they need nothing.

CLI::

    python -m deploy.localstack.gateway run [--port 8080] [--scheduler 8001] [--monitoring 8002]
        [--notifications 8003] [--group-matching 8004] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from deploy.localstack.kafka import (
    _LIVE,
    _run_foreground,
    free_port,
    hard_kill,
    spawn,
    tail,
    terminate,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "deploy" / "gateway" / "nginx.conf.template"

#: upstream name (as in ``upstreams=``) -> template placeholder
SERVICES: dict[str, str] = {
    "scheduler": "SCHEDULER_PORT",
    "monitoring": "MONITORING_PORT",
    "notifications": "NOTIFICATIONS_PORT",
    "group_matching": "GROUP_MATCHING_PORT",
}
#: a service not given in ``upstreams`` is routed here: nothing listens, so requests get a 502
UNROUTED_PORT = 9
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class GatewayLaunchError(RuntimeError):
    """nginx missing, config invalid, or nginx did not come up (message has the error log)."""


def find_nginx(install: bool = True) -> str:
    """``nginx`` on PATH or /usr/sbin/nginx; else (root + apt) install ``nginx-light``."""
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        log.warning("nginx not found; installing nginx-light with apt-get")
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light"],
        ):
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if proc.returncode != 0:
                raise GatewayLaunchError(
                    f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
                )
        return find_nginx(install=False)
    raise GatewayLaunchError("nginx not found (PATH, /usr/sbin/nginx); apt-get install nginx-light")


def render_template(values: Mapping[str, object], template: Path = TEMPLATE_PATH) -> str:
    """Substitute ``${UPPER_CASE}`` placeholders; nginx ``$lower_case`` variables stay."""
    text = template.read_text()
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise GatewayLaunchError(f"no value for template placeholders: {missing}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def _user_directive() -> str:
    if os.geteuid() != 0:
        return ""  # an unprivileged master cannot switch users
    try:
        pw = pwd.getpwnam("nobody")
        return f"user {pw.pw_name} {grp.getgrgid(pw.pw_gid).gr_name};"
    except KeyError:
        # no `nobody`: run the workers as root (loopback-only dev gateway; it serves no files)
        return "user root root;"


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class LocalGateway:
    """nginx on 127.0.0.1:``port``: ``/api/<service>/`` -> ``127.0.0.1:<upstreams[service]>``.

    ``upstreams`` keys: ``scheduler``, ``monitoring``, ``notifications``, ``group_matching``
    (missing ones answer 502). ``run_dir`` default: a temp dir removed by ``stop()``.
    """

    def __init__(
        self,
        port: int | None = None,
        upstreams: Mapping[str, int] | None = None,
        run_dir: Path | None = None,
        *,
        startup_timeout: float = 15.0,
    ) -> None:
        upstreams = dict(upstreams or {})
        unknown = set(upstreams) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown upstream(s) {sorted(unknown)}; known: {sorted(SERVICES)}")
        self.port = port or free_port()
        self.upstreams = upstreams
        self._owns_dir = run_dir is None
        self.run_dir = (
            Path(tempfile.mkdtemp(prefix="taper-gw-")) if run_dir is None
            else Path(run_dir).resolve()
        )  # fmt: skip
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        _LIVE.add(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.run_dir / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.run_dir / "logs" / "access.log"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def render(self) -> Path:
        for sub in ("logs", "tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(self.run_dir, 0o755)  # noqa: S103 - workers (nobody) must reach tmp/
            os.chmod(self.run_dir / "tmp", 0o755)  # noqa: S103
        values: dict[str, object] = {
            "GATEWAY_PORT": self.port,
            "RUN_DIR": self.run_dir,
            "USER_DIRECTIVE": _user_directive(),
        }
        for name, placeholder in SERVICES.items():
            values[placeholder] = self.upstreams.get(name, UNROUTED_PORT)
        self.conf_path.write_text(render_template(values))
        return self.conf_path

    def _cmd(self, *extra: str) -> list[str]:
        # -e: the pre-config error log (default /var/log/nginx/error.log) goes to the run dir too
        return [
            find_nginx(),
            "-p",
            f"{self.run_dir}/",
            "-e",
            str(self.error_log),
            "-c",
            str(self.conf_path),
            "-g",
            "daemon off;",
            *extra,
        ]

    def start(self) -> LocalGateway:
        if self.is_running():
            return self
        self.render()
        check = subprocess.run(
            self._cmd("-t", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise GatewayLaunchError(f"nginx -t failed for {self.conf_path}:\n{check.stderr}")
        self.proc = spawn(self._cmd(), self.run_dir / "logs" / "nginx.stdout.log")
        deadline = time.monotonic() + self.startup_timeout
        while not _port_open(self.port):
            if not self.is_running() or time.monotonic() > deadline:
                rc = self.proc.poll()
                self.kill()
                raise GatewayLaunchError(
                    f"nginx did not start listening on 127.0.0.1:{self.port} (rc={rc})\n"
                    f"{tail(self.error_log, 4000)}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (fast shutdown; SIGQUIT would wait for clients), SIGKILL after ``timeout``."""
        if self.proc is not None:
            terminate(self.proc, timeout)
        if self._owns_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def kill(self) -> None:
        if self.proc is not None:
            hard_kill(self.proc)

    def _atexit(self) -> None:
        self.kill()
        if self._owns_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.localstack.gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the nginx gateway in the foreground")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--scheduler", type=int, default=8001)
    run.add_argument("--monitoring", type=int, default=8002)
    run.add_argument("--notifications", type=int, default=8003)
    run.add_argument("--group-matching", type=int, default=8004)
    run.add_argument("--run-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    gw = LocalGateway(
        args.port,
        {
            "scheduler": args.scheduler,
            "monitoring": args.monitoring,
            "notifications": args.notifications,
            "group_matching": args.group_matching,
        },
        args.run_dir,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return _run_foreground(
            gw.start, gw.stop, lambda: f"gateway on {gw.url} (logs: {gw.run_dir / 'logs'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
