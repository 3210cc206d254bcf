"""Local nginx API gateway in front of the four services (see deploy/gateway/nginx.conf.template).

``LocalGateway(port, upstreams={"scheduler": 8001, ...}).start()`` renders the templates into a
run dir, checks them with ``nginx -t``, and runs ``nginx -p RUN_DIR -c CONF -g 'daemon off;'`` as a
child process (own process group, atexit + PDEATHSIG cleanup from deploy.localstack.process).

Knobs (defaults = the production values): ``rate_per_second``/``burst`` (per-client request rate,
nodelay burst), ``conn_per_client``, ``max_body`` (an nginx size such as ``"1m"``). A fuzzer or load
test that should never meet a 429 passes e.g. ``rate_per_second=10000, burst=10000``.

CORS: ``cors_origins=["https://app.example.org"]`` lets scripts of those origins call the API with
credentials (preflights answered by nginx); default none: no CORS header at all.

Docs: ``/api/openapi.json`` is the merged document of all four services
(``contracts/openapi/taper.json``, ``python -m deploy.openapi``) and ``/api/docs/`` Swagger UI over
it, from local files (``static_files``; no CDN).

TLS: ``LocalGateway(..., tls=TlsFiles(cert_chain, key), tls_port=None)`` adds a second listener on
127.0.0.1:``tls_port`` (a free port by default; ``tls_url``) with the same routes, limits and
headers as the plain one (both include the rendered server-body.conf), TLS 1.2/1.3 only, plus HSTS.
HTTP/2 is switched on there only when the installed nginx has ``http2 on;`` (1.25.1+, built with
http_v2); older ones serve HTTP/1.1.

Root vs. unprivileged: an unprivileged nginx master cannot switch users and ignores ``user`` (with a
warning), so the directive is omitted. As root, the master would start workers as ``nobody`` by
default; we keep that (workers should not run as root) and make the run dir traversable (0755) so
the workers can use the temp paths, which the master creates and chowns to the worker user itself.
Logs and the listen socket are opened by the master before workers start, so they need nothing.

CLI::

    python -m deploy.localstack.gateway run [--port 8080] [--scheduler 8001] [--monitoring 8002]
        [--notifications 8003] [--group-matching 8004] [--run-dir DIR]
        [--rate-per-second 20] [--burst 40] [--conn-per-client 50] [--max-body 1m]
        [--tls-cert CHAIN.pem --tls-key KEY.pem [--tls-port 8443]] [--cors-origin ORIGIN ...]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import grp
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.localstack.process import (
    free_port,
    hard_kill,
    kill_at_exit,
    port_open,
    run_foreground,
    spawn,
    tail,
    terminate,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = REPO_ROOT / "deploy" / "gateway"
TEMPLATE_PATH = TEMPLATE_DIR / "nginx.conf.template"
#: the shared server body (limits, headers, routes), included by the plain and the TLS server
SERVER_BODY_TEMPLATE = TEMPLATE_DIR / "server-body.conf.template"
TLS_SERVER_TEMPLATE = TEMPLATE_DIR / "tls-server.conf.template"
#: the docs page's own files (the Swagger UI assets come from the fastapi-offline package)
DOCS_DIR = TEMPLATE_DIR / "docs"
MERGED_OPENAPI = REPO_ROOT / "contracts" / "openapi" / "taper.json"
#: an origin as a browser sends it: scheme, host, optional port; lower case, nothing else (it is
#: written into the nginx config, so nothing that could end a string or a directive)
_ORIGIN = re.compile(r"https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")

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
#: an nginx size as client_max_body_size takes it: bytes, or k / m / g (binary units)
_NGINX_SIZE = re.compile(r"([1-9][0-9]{0,8})([kKmMgG]?)")
_SIZE_UNITS = {"": "bytes", "k": "KiB", "m": "MiB", "g": "GiB"}


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
    """Substitute ``${UPPER_CASE}`` placeholders; nginx ``$lower_case`` variables stay, and so do
    comment lines (the templates document their placeholders there)."""
    lines = template.read_text().splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if not line.lstrip().startswith("#")]
    missing = sorted({m for i in code for m in _PLACEHOLDER.findall(lines[i]) if m not in values})
    if missing:
        raise GatewayLaunchError(f"no value for template placeholders: {missing}")
    for i in code:
        lines[i] = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), lines[i])
    return "".join(lines)


def max_body_text(size: str) -> str:
    """The 413 message's words for an nginx size: ``"1m"`` -> ``"1 MiB"``, ``"512k"`` ->
    ``"512 KiB"``, ``"100"`` -> ``"100 bytes"``; ValueError unless a positive nginx size."""
    m = _NGINX_SIZE.fullmatch(size)
    if not m:
        raise ValueError(f"max_body must be a positive nginx size (1m, 512k, 100); got {size!r}")
    return f"{m.group(1)} {_SIZE_UNITS[m.group(2).lower()]}"


def cors_origins_conf(origins: Sequence[str]) -> tuple[str, str]:
    """The ``CORS_ORIGINS`` map entries and the ``CORS_VARY`` directive for an allow-list;
    ValueError for anything but ``scheme://host[:port]`` in lower case (no path, no ``*``)."""
    for origin in origins:
        if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"a CORS origin is scheme://host[:port] in lower case, e.g. "
                f"https://app.example.org; got {origin!r}"
            )
    entries = " ".join(f'"{origin}" $http_origin;' for origin in origins)
    return entries, "add_header Vary Origin always;" if origins else ""


def static_files() -> dict[str, Path]:
    """What the gateway serves itself, by URI path: the merged OpenAPI document, the docs page
    and Swagger UI's assets (fastapi-offline ships them, MIT; Swagger UI itself is Apache-2.0)."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    return {
        "api/openapi.json": MERGED_OPENAPI,
        "api/docs/index.html": DOCS_DIR / "index.html",
        "api/docs/swagger-initializer.js": DOCS_DIR / "swagger-initializer.js",
        "api/docs/swagger-ui-bundle.js": assets / "swagger-ui-bundle.js",
        "api/docs/swagger-ui.css": assets / "swagger-ui.css",
        "api/docs/favicon.png": assets / "favicon.png",
    }


def install_static(directory: Path) -> Path:
    """Copy ``static_files()`` under ``directory`` (the gateway's ``STATIC_DIR``)."""
    for relative, source in static_files().items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return directory


def _require_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the TLS listener: ``cert_chain`` (leaf first, then any intermediates) and its
    private ``key`` (unencrypted: nginx is not given a passphrase)."""

    cert_chain: Path
    key: Path


@functools.cache
def nginx_build_info(nginx: str) -> str:
    """``nginx -V`` output (version, OpenSSL, configure arguments); cached per binary."""
    proc = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout + proc.stderr


def supports_http2_directive(build_info: str) -> bool:
    """Whether an nginx with this ``nginx -V`` output accepts ``http2 on;`` (1.25.1+ with the
    http_v2 module; older ones only know the deprecated ``listen ... http2`` form)."""
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", build_info)
    if not m or "--with-http_v2_module" not in build_info:
        return False
    major, minor, patch = (int(x) for x in m.groups())
    return (major, minor, patch) >= (1, 25, 1)


def _user_directive() -> str:
    if os.geteuid() != 0:
        return ""  # an unprivileged master cannot switch users
    try:
        pw = pwd.getpwnam("nobody")
        return f"user {pw.pw_name} {grp.getgrgid(pw.pw_gid).gr_name};"
    except KeyError:
        # no `nobody`: run the workers as root (loopback-only dev gateway; it serves no files)
        return "user root root;"


class LocalGateway:
    """nginx on 127.0.0.1:``port``: ``/api/<service>/`` -> ``127.0.0.1:<upstreams[service]>``
    (a port, or a list of ports: the service's replicas, balanced round-robin; a request that
    cannot connect to one goes to the next, a POST is never re-sent once it reached one).

    ``upstreams`` keys: ``scheduler``, ``monitoring``, ``notifications``, ``group_matching``
    (missing ones answer 502). ``run_dir`` default: a temp dir removed by ``stop()``.
    Per client address: ``rate_per_second`` requests/s with bursts of ``burst`` (nodelay), at most
    ``conn_per_client`` connections; beyond them a JSON 429. Bodies up to ``max_body`` (nginx size),
    else a JSON 413. ``tls``: also listen with TLS on 127.0.0.1:``tls_port`` (module docstring).
    nginx has ``worker_connections 1024`` and a proxied request holds two, so ``conn_per_client``
    beyond ~500 is bounded by that rather than by the limit.
    """

    def __init__(
        self,
        port: int | None = None,
        upstreams: Mapping[str, int | Sequence[int]] | None = None,
        run_dir: Path | None = None,
        *,
        startup_timeout: float = 15.0,
        rate_per_second: int = 20,
        burst: int = 40,
        conn_per_client: int = 50,
        max_body: str = "1m",
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        cors_origins: Sequence[str] = (),
    ) -> None:
        # one port per service, or several (its replicas; requests are spread over them)
        ports_of: dict[str, list[int]] = {
            name: [ports] if isinstance(ports, int) else list(ports)
            for name, ports in (upstreams or {}).items()
        }
        if any(not ports for ports in ports_of.values()):
            raise ValueError("an upstream needs at least one port")
        unknown = set(ports_of) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown upstream(s) {sorted(unknown)}; known: {sorted(SERVICES)}")
        _require_int("rate_per_second", rate_per_second, 1)
        _require_int("burst", burst, 0)
        _require_int("conn_per_client", conn_per_client, 1)
        max_body_text(max_body)  # validates
        if isinstance(cors_origins, str):
            raise ValueError("cors_origins is a list of origins, not one string")
        cors_origins_conf(cors_origins)  # validates
        self.cors_origins = tuple(cors_origins)
        if tls_port is not None and tls is None:
            raise ValueError("tls_port given without tls=TlsFiles(cert_chain, key)")
        self.port = port or free_port()
        self.upstreams = ports_of
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.conn_per_client = conn_per_client
        self.max_body = max_body
        self.tls = (
            None if tls is None
            else TlsFiles(Path(tls.cert_chain).resolve(), Path(tls.key).resolve())
        )  # fmt: skip
        self.tls_port = (tls_port or free_port()) if tls is not None else None
        self._owns_dir = run_dir is None
        self.run_dir = (
            Path(tempfile.mkdtemp(prefix="taper-gw-")) if run_dir is None
            else Path(run_dir).resolve()
        )  # fmt: skip
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        kill_at_exit(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str | None:
        """``https://127.0.0.1:<tls_port>``, or None without TLS."""
        return None if self.tls_port is None else f"https://127.0.0.1:{self.tls_port}"

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def server_body_path(self) -> Path:
        return self.run_dir / "server-body.conf"

    @property
    def tls_server_path(self) -> Path:
        return self.run_dir / "tls-server.conf"

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
            "RATE_PER_SECOND": self.rate_per_second,
            "LIMIT_REQ_BURST": f"burst={self.burst} nodelay" if self.burst else "",
            "CONN_PER_CLIENT": self.conn_per_client,
            "MAX_BODY": self.max_body,
            "MAX_BODY_TEXT": max_body_text(self.max_body),
            "TLS_SERVER_INCLUDE": "",
            "STATIC_DIR": install_static(self.run_dir / "static"),
        }
        values["CORS_ORIGINS"], values["CORS_VARY"] = cors_origins_conf(self.cors_origins)
        for name, placeholder in SERVICES.items():
            ports = self.upstreams.get(name, [UNROUTED_PORT])
            values[placeholder] = ports[0]
            # further replicas of the service (make run-cluster): nginx balances over all of them
            values[placeholder.replace("_PORT", "_EXTRA_SERVERS")] = " ".join(
                f"server 127.0.0.1:{p};" for p in ports[1:]
            )
        self.tls_server_path.unlink(missing_ok=True)  # a run dir reused without TLS
        if self.tls is not None:
            values.update(self._tls_values())
            self.tls_server_path.write_text(render_template(values, TLS_SERVER_TEMPLATE))
        self.server_body_path.write_text(render_template(values, SERVER_BODY_TEMPLATE))
        self.conf_path.write_text(render_template(values))
        return self.conf_path

    def _tls_values(self) -> dict[str, object]:
        assert self.tls is not None
        for path in (self.tls.cert_chain, self.tls.key):
            if not path.is_file():
                raise GatewayLaunchError(f"TLS file not found: {path}")
        info = nginx_build_info(find_nginx())
        if "--with-http_ssl_module" not in info:
            raise GatewayLaunchError(f"this nginx has no TLS (http_ssl_module):\n{info}")
        return {
            "TLS_SERVER_INCLUDE": f"include {self.tls_server_path};",
            "TLS_PORT": self.tls_port,
            "TLS_CERT": self.tls.cert_chain,
            "TLS_KEY": self.tls.key,
            "HTTP2_DIRECTIVE": "http2 on;" if supports_http2_directive(info) else "",
        }

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
        ports = [self.port] if self.tls_port is None else [self.port, self.tls_port]
        while not all(port_open(p) for p in ports):
            if not self.is_running() or time.monotonic() > deadline:
                rc = self.proc.poll()
                self.kill()
                raise GatewayLaunchError(
                    f"nginx did not start listening on 127.0.0.1 ports {ports} (rc={rc})\n"
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

    def kill_for_exit(self) -> None:
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
    run.add_argument("--rate-per-second", type=int, default=20, help="per client (default 20)")
    run.add_argument("--burst", type=int, default=40, help="per client, nodelay (default 40)")
    run.add_argument("--conn-per-client", type=int, default=50, help="default 50")
    run.add_argument("--max-body", default="1m", help="nginx size, default 1m")
    run.add_argument("--tls-cert", type=Path, default=None, help="PEM chain: enables the TLS port")
    run.add_argument("--tls-key", type=Path, default=None, help="PEM key of --tls-cert")
    run.add_argument("--tls-port", type=int, default=None, help="default 8443 (with --tls-cert)")
    run.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="an origin allowed to call the API from a browser (repeat it); default none",
    )
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_port is not None and args.tls_cert is None:
        parser.error("--tls-port needs --tls-cert and --tls-key")
    tls = None if args.tls_cert is None else TlsFiles(args.tls_cert, args.tls_key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        gw = LocalGateway(
            args.port,
            {
                "scheduler": args.scheduler,
                "monitoring": args.monitoring,
                "notifications": args.notifications,
                "group_matching": args.group_matching,
            },
            args.run_dir,
            rate_per_second=args.rate_per_second,
            burst=args.burst,
            conn_per_client=args.conn_per_client,
            max_body=args.max_body,
            tls=tls,
            tls_port=(args.tls_port or 8443) if tls is not None else None,
            cors_origins=args.cors_origin,
        )
    except ValueError as exc:
        parser.error(str(exc))
    urls = gw.url if gw.tls_url is None else f"{gw.url} and {gw.tls_url}"
    with contextlib.suppress(KeyboardInterrupt):
        return run_foreground(
            gw.start, gw.stop, lambda: f"gateway on {urls} (logs: {gw.run_dir / 'logs'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
