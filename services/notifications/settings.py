from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.chassis.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore")

    service_name: str = "notifications"
    http_port: int = 8103
    page_webhook_url: str = "http://127.0.0.1:8199/pages"
    page_routing_key: str = "taper-dev-routing-key"
    page_webhook_timeout_s: float = 5.0
