"""The four services served over HTTP (uvicorn, SQLite, no broker), for the gateway tests."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from services.chassis.migrations import upgrade_to_head
from services.chassis.runtime import ServiceRuntime
from tests.all_services import SERVICES, sqlite_runtime


class ServedApps:
    """The four services' apps on uvicorn, in a thread with its own event loop."""

    def __init__(self, directory: Path) -> None:
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.ports: dict[str, int] = {}
        self._servers: list[uvicorn.Server] = []
        running = threading.Event()
        main = self._main(running)
        self._thread = threading.Thread(target=asyncio.run, args=(main,), daemon=True)
        self._thread.start()
        running.wait(timeout=30)
        for name in SERVICES:
            self.call(self._serve(name, directory))

    async def _main(self, running: threading.Event) -> None:
        # Under asyncio.run, like ServiceRuntime.serve(): anyio ties its worker threads (sync
        # dependencies such as the token check run there) to this long-lived task and reuses
        # them; under loop.run_forever() it would start and stop a thread per request.
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        running.set()
        await self._stopped.wait()

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the apps' event loop (their engines live there) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _serve(self, name: str, directory: Path) -> None:
        runtime = sqlite_runtime(name, directory)
        await upgrade_to_head(runtime.engine, name)
        # lifespan off: the API without the broker, consumers and relay (no broker here).
        config = uvicorn.Config(
            runtime.app, host="127.0.0.1", port=0, log_config=None, access_log=False,
            lifespan="off",
        )  # fmt: skip
        server = uvicorn.Server(config)
        self.loop.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        self.runtimes[name] = runtime
        self.ports[name] = server.servers[0].sockets[0].getsockname()[1]
        self._servers.append(server)

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers:
                server.should_exit = True
            await asyncio.sleep(0.3)
            for runtime in self.runtimes.values():
                await runtime.engine.dispose()

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class Served:
    url: str  # the gateway's
    apps: ServedApps
