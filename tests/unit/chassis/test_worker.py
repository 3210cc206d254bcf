"""The polling worker's wake-up: a commit that lands while a round is running is never lost."""

from __future__ import annotations

import asyncio

import pytest

from services.chassis.worker import PollingWorker


class RacingWorker(PollingWorker):
    """Its first round is woken mid-query (as a commit racing the relay's SELECT would do)."""

    def __init__(self) -> None:
        super().__init__("racing", poll_interval_s=60.0)  # the poll must not rescue the wake-up
        self.rounds = 0
        self.second_round = asyncio.Event()

    async def run_once(self) -> bool:
        self.rounds += 1
        if self.rounds == 1:
            await asyncio.sleep(0)
            self.wake()  # work committed after this round's query: found only by another round
        else:
            self.second_round.set()
        return False


@pytest.mark.asyncio
async def test_a_wake_during_a_round_runs_another_round_without_waiting_for_the_poll() -> None:
    worker = RacingWorker()
    worker.start()
    try:
        await asyncio.wait_for(worker.second_round.wait(), timeout=5.0)
    finally:
        await worker.stop()
    assert worker.rounds == 2
