from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.chassis.settings import ServiceSettings

DEV_ACK_LINK_SECRET = "dev-only-ack-link-secret-change-me-0123456789"  # noqa: S105 - refused in prod
DEV_PAGE_ROUTING_KEY = "taper-dev-routing-key"  # the local sink's; refused in production
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})  # noqa: S104 - a name list


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")

    service_name: str = "notifications"
    http_port: int = 8103
    # Deliveries wait on providers: several at once, so one slow provider holds up no other page.
    timer_concurrency: int = 8

    # Webhook channel: a PagerDuty-Events-v2-compatible endpoint (PagerDuty itself, or a bridge).
    # ``page_routing_key`` is the organisation's pager: it gets a page nobody else can be reached
    # for (no schedule, nobody on call, no contact on file), so a page is never dropped.
    page_webhook_url: str = "http://127.0.0.1:8199/pages"
    page_routing_key: str = DEV_PAGE_ROUTING_KEY
    page_webhook_timeout_s: float = 5.0

    # Email over SMTP.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "taper-notifications@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_start_tls: bool = False
    smtp_timeout_s: float = 10.0

    # SMS through an HTTP provider (Twilio-compatible Messages API).
    sms_base_url: str = "http://127.0.0.1:8199/sms"
    sms_account_sid: str = "ACdevaccount"
    sms_auth_token: str = "dev-token"  # noqa: S105 - the local sink ignores it
    sms_from_number: str = "+15550100000"
    sms_timeout_s: float = 5.0

    # Acknowledge links in pages: signed, expiring, for one clinician and one escalation.
    public_base_url: str = "http://127.0.0.1:8080"
    ack_link_secret: str = Field(default=DEV_ACK_LINK_SECRET, min_length=32)
    ack_link_ttl_minutes: int = Field(default=24 * 60, gt=0)

    # Retries of one delivery (a page or message on one channel), backoff doubling to 5 min.
    delivery_max_attempts: int = Field(default=6, ge=1)
    # How long a claimed delivery belongs to its sender: a ``sending`` row past its lease is in
    # doubt (the process died mid-call) and is looked up at the provider or resent. Longer than
    # every provider timeout, so a slow call in a live process is never taken for a dead one.
    delivery_lease_s: float = Field(default=20.0, gt=0)

    # Live updates (server-sent events, entrypoints/events_api.py): how often a stream looks
    # for new feed rows, the heartbeat comment that keeps proxies from closing an idle stream,
    # and how long one stream lasts before the client reconnects (with Last-Event-ID, and its
    # token checked again: a revoked token or a changed panel does not outlive it). Real seconds.
    events_poll_interval_s: float = Field(default=0.5, gt=0, le=10)
    events_heartbeat_s: float = Field(default=15.0, gt=0, le=60)
    events_stream_max_s: float = Field(default=300.0, gt=0, le=3600)
    # How long feed rows are kept for a reconnecting client (real hours, whatever the clock's
    # scale): one that was away longer gets a ``feed.reset`` and reloads its lists.
    events_retention_hours: float = Field(default=24.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_provider_calls(self) -> NotificationsSettings:
        timeouts = {
            "NOTIFICATIONS_PAGE_WEBHOOK_TIMEOUT_S": self.page_webhook_timeout_s,
            "NOTIFICATIONS_SMTP_TIMEOUT_S": self.smtp_timeout_s,
            "NOTIFICATIONS_SMS_TIMEOUT_S": self.sms_timeout_s,
        }
        for name, timeout in timeouts.items():
            if timeout >= self.delivery_lease_s:
                raise ValueError(
                    f"{name} must be shorter than NOTIFICATIONS_DELIVERY_LEASE_S"
                    " (a call still under way would be taken for a crash and resent)"
                )
        return self

    @model_validator(mode="after")
    def _refuse_dev_link_secret_in_production(self) -> NotificationsSettings:
        if self.environment == "production" and self.ack_link_secret == DEV_ACK_LINK_SECRET:
            raise ValueError("NOTIFICATIONS_ACK_LINK_SECRET must be set in production")
        return self

    @model_validator(mode="after")
    def _refuse_dev_pager_in_production(self) -> NotificationsSettings:
        """A page sent to the development sink reaches nobody: production must name its pager."""
        if self.environment != "production":
            return self
        if _is_local(self.page_webhook_url):
            raise ValueError(
                "NOTIFICATIONS_PAGE_WEBHOOK_URL must not be a local address in production"
            )
        if _is_local(self.public_base_url):
            # The acknowledge links in pages would point at the clinician's own machine.
            raise ValueError(
                "NOTIFICATIONS_PUBLIC_BASE_URL must not be a local address in production"
            )
        if self.page_routing_key == DEV_PAGE_ROUTING_KEY:
            raise ValueError("NOTIFICATIONS_PAGE_ROUTING_KEY must be set in production")
        return self


def _is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.endswith(".localhost")
