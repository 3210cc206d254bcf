"""Channels that deliver a page. Each is an adapter behind the ``PageSender`` port."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from services.chassis.errors import SafeError
from services.chassis.telemetry import current_trace_headers
from services.notifications.domain.paging import Page, pagerduty_event


class DeliveryFailed(SafeError):
    """The channel did not accept the page; the timer retries it with backoff."""


class PageSender(Protocol):
    async def send(self, page: Page) -> None: ...


class WebhookPageSender:
    """POSTs a PagerDuty-Events-v2-shaped JSON body to a configured URL."""

    def __init__(self, url: str, routing_key: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._routing_key = routing_key
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, page: Page) -> None:
        body = pagerduty_event(page, self._routing_key)
        headers = {"Idempotency-Key": page.dedup_key, **current_trace_headers()}
        try:
            response = await self._client.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook unreachable: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"webhook answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


class RecordingPageSender:
    """A fake for unit tests: remembers what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Page] = []
        self.fail_next = 0

    async def send(self, page: Page) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise DeliveryFailed("induced failure")
        self.sent.append(page)

    def bodies(self, routing_key: str = "test") -> list[dict[str, Any]]:
        return [pagerduty_event(p, routing_key) for p in self.sent]
