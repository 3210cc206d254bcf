"""A real HTTP receiver standing in for a paging provider (not a mock: it listens on a port)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deploy.localstack.process import free_port


class WebhookReceiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.attempts = 0
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pages"

    async def _pages(self, request: Request) -> JSONResponse:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        self.received.append({"headers": dict(request.headers), "body": await request.json()})
        return JSONResponse({"status": "success", "message": "Event processed"}, status_code=202)

    async def __aenter__(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/pages", self._pages, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server and self._task
        self._server.should_exit = True
        await self._task
