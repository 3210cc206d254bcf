"""A background loop that does work when woken (after a commit) or every poll interval.

The outbox relay and the timer poller are both this: the wake-up keeps latency low, the poll is
the safety net for work written by another process or left by a crash.
"""

from __future__ import annotations

import asyncio
import logging

from services.chassis.errors import safe_reason

log = logging.getLogger(__name__)


class PollingWorker:
    def __init__(self, name: str, poll_interval_s: float) -> None:
        self._name = name
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> bool:
        """Do one round of work; True when more is waiting (loop again without sleeping)."""
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)
        log.info("background worker started", extra={"worker": self._name})

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            # Clear before the round, not after: a wake() that arrives while run_once() is
            # working (a commit that raced the query) must make the loop go round again, not be
            # wiped out and left to the next poll interval.
            self._wake.clear()
            try:
                more = await self.run_once()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "background worker failed, will retry",
                    extra={"worker": self._name, "error": safe_reason(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if more:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            except TimeoutError:
                pass
