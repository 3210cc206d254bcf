from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.chassis.settings import ServiceSettings


class MonitoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MONITORING_", extra="ignore")

    service_name: str = "monitoring"
    http_port: int = 8102
