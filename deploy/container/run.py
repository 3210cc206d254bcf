"""The container's entrypoint: one image, the command chooses what it runs.

    run.py serve <service>     the service's HTTP API, consumers, outbox relay and timers
    run.py migrate <service>   bring the service's database to the newest migration, then exit
    run.py healthcheck         exit 0 when the service in this container answers /health

``<service>`` is one of scheduler, monitoring, notifications, group_matching. Everything else comes
from the environment, exactly as for ``python -m services.<service>.entrypoints.main`` (TAPER_ENV
has no default: a container without it refuses to start). In the image this file is /app/run.py
next to /app/contracts and /app/services (PYTHONPATH=/app); in the repository it is
deploy/container/run.py and runs the same way from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.chassis.settings import ServiceSettings

SERVICES = ("scheduler", "monitoring", "notifications", "group_matching")
_SETTINGS_CLASS = {
    "scheduler": "SchedulerSettings",
    "monitoring": "MonitoringSettings",
    "notifications": "NotificationsSettings",
    "group_matching": "GroupMatchingSettings",
}

if __package__ in (None, ""):  # run as a script: the source tree is next to us or two levels up
    here = Path(__file__).resolve().parent
    root = here if (here / "services").is_dir() else here.parents[1]
    sys.path.insert(0, str(root))


def _settings(service: str) -> ServiceSettings:
    module = importlib.import_module(f"services.{service}.settings")
    settings: ServiceSettings = getattr(module, _SETTINGS_CLASS[service])()
    return settings


def serve(service: str) -> int:
    # In a container the port must be reachable from outside it: all interfaces unless the
    # operator says otherwise (the process default, 127.0.0.1, suits a developer's machine).
    os.environ.setdefault(f"{service.upper()}_HTTP_HOST", "0.0.0.0")  # noqa: S104
    main = importlib.import_module(f"services.{service}.entrypoints.main")
    main.main()
    return 0


def migrate(service: str) -> int:
    from services.chassis.db import make_engine
    from services.chassis.logs import configure_logging
    from services.chassis.migrations import upgrade_to_head

    settings = _settings(service)
    configure_logging(service, settings.log_level)

    async def _run() -> None:
        engine = make_engine(settings.effective_database_url)
        try:
            await upgrade_to_head(engine, service)
        finally:
            await engine.dispose()

    asyncio.run(_run())
    print(f"{service}: database at the newest migration", flush=True)
    return 0


def _service_of_pid1() -> str | None:
    """The service PID 1 serves (``run.py serve <service>``): the HEALTHCHECK runs beside it."""
    try:
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [a.decode(errors="replace") for a in argv]
    if "serve" in words and words.index("serve") + 1 < len(words):
        return words[words.index("serve") + 1]
    return None


def healthcheck(service: str | None) -> int:
    service = service or _service_of_pid1()
    if service not in SERVICES:
        print("healthcheck: no service to check (run.py serve <service> is not PID 1)")
        return 1
    settings = _settings(service)
    url = f"http://127.0.0.1:{settings.http_port}{settings.url_prefix}/health"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {service} does not answer ({type(exc).__name__})")
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run a service").add_argument("service", choices=SERVICES)
    commands.add_parser("migrate", help="migrate a service's database").add_argument(
        "service", choices=SERVICES
    )
    commands.add_parser("healthcheck", help="is this container's service up?").add_argument(
        "service", nargs="?", choices=SERVICES
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service)
    if args.command == "migrate":
        return migrate(args.service)
    return healthcheck(args.service)


if __name__ == "__main__":
    sys.exit(main())
