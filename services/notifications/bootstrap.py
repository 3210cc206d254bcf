"""Notifications' composition root."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import Clock
from services.chassis.runtime import ServiceRuntime
from services.notifications.adapters.orm import metadata
from services.notifications.adapters.senders import PageSender, WebhookPageSender
from services.notifications.entrypoints import api, consumers
from services.notifications.service_layer import handlers
from services.notifications.settings import NotificationsSettings


def bootstrap(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    page_sender: PageSender | None = None,
) -> ServiceRuntime:
    settings = settings or NotificationsSettings()
    sender = page_sender or WebhookPageSender(
        settings.page_webhook_url, settings.page_routing_key, settings.page_webhook_timeout_s
    )
    return ServiceRuntime(
        settings,
        metadata=metadata,
        subscriptions=consumers.SUBSCRIPTIONS,
        timer_handlers={handlers.DELIVER_PAGE: handlers.make_deliver_page(sender)},
        routers=api.routers,
        clock=clock,
        tracer_provider=tracer_provider,
    )
