from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.chassis.settings import ServiceSettings


class GroupMatchingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GROUP_MATCHING_", extra="ignore")

    service_name: str = "group_matching"
    http_port: int = 8104
