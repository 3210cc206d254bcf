"""Notifications' composition root: channels, deliverer and owners, consumers, timers, API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from services.chassis.clock import Clock
from services.chassis.runtime import ServiceRuntime
from services.chassis.telemetry import tracer_provider_from_settings
from services.notifications.adapters import paging_metrics
from services.notifications.adapters.ack_links import AckLinks
from services.notifications.adapters.channels import (
    Channel,
    ChannelKind,
    HttpSmsChannel,
    SmtpEmailChannel,
    WebhookChannel,
)
from services.notifications.adapters.metrics import NotificationMetrics
from services.notifications.adapters.orm import metadata
from services.notifications.entrypoints import (
    api,
    consumers,
    events_api,
    preferences_api,
    teams_api,
)
from services.notifications.service_layer import (
    escalations,
    message_delivery,
    page_delivery,
    patient_messages,
)
from services.notifications.service_layer.delivery import DELIVER, IN_DOUBT, Deliverer
from services.notifications.settings import NotificationsSettings


def real_channels(
    settings: NotificationsSettings, tracer_provider: TracerProvider | None = None
) -> dict[ChannelKind, Channel]:
    return {
        ChannelKind.WEBHOOK: WebhookChannel(
            settings.page_webhook_url,
            timeout_s=settings.page_webhook_timeout_s,
            tracer_provider=tracer_provider,
        ),
        ChannelKind.EMAIL: SmtpEmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_start_tls,
            timeout_s=settings.smtp_timeout_s,
        ),
        ChannelKind.SMS: HttpSmsChannel(
            settings.sms_base_url,
            settings.sms_account_sid,
            settings.sms_auth_token,
            settings.sms_from_number,
            timeout_s=settings.sms_timeout_s,
        ),
    }


def bootstrap(
    settings: NotificationsSettings | None = None,
    *,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    channels: Mapping[ChannelKind, Channel] | None = None,
) -> ServiceRuntime:
    settings = settings or NotificationsSettings()
    # Made here, not by the runtime: the webhook channel's client span needs it before that.
    tracer_provider = tracer_provider or tracer_provider_from_settings(settings)
    links = AckLinks(
        settings.ack_link_secret,
        settings.public_base_url.rstrip("/") + settings.url_prefix + "/ack",
        timedelta(minutes=settings.ack_link_ttl_minutes),
    )
    pages = page_delivery.PageOwner(links, fallback_routing_key=settings.page_routing_key)
    channels = channels if channels is not None else real_channels(settings, tracer_provider)
    deliverer = Deliverer(
        channels,
        {
            escalations.OWNER_KIND: pages,
            message_delivery.OWNER_KIND: message_delivery.MessageOwner(),
        },
        max_attempts=settings.delivery_max_attempts,
        lease=timedelta(seconds=settings.delivery_lease_s),
    )
    runtime = ServiceRuntime(
        settings,
        metadata=metadata,
        subscriptions=consumers.SUBSCRIPTIONS,
        timer_handlers={
            DELIVER: deliverer,
            IN_DOUBT: deliverer.in_doubt,
            **escalations.TIMER_HANDLERS,
            **patient_messages.TIMER_HANDLERS,
        },
        routers=lambda rt: [
            *api.routers(rt, links),
            *preferences_api.routers(rt),
            *teams_api.routers(rt),
            *events_api.routers(rt, settings),
        ],
        clock=clock,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    # The live-update feed is for reconnecting clients, not a history: pruned like the outbox.
    runtime.retention.keep(
        "event_feed", "created_at", timedelta(hours=settings.events_retention_hours)
    )
    paging_metrics.install(runtime.meter_provider)
    deliverer.bind(runtime.uow)  # claims commit in a transaction of their own
    for channel in channels.values():
        runtime.close_on_stop(channel.aclose)
    notification_metrics = NotificationMetrics(runtime.meter_provider)
    deliverer.metrics = notification_metrics
    runtime.sampler.add_probe(notification_metrics.watch_red_pages(runtime.engine, runtime.clock))
    return runtime
