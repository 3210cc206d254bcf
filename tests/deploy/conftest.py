"""Shared helpers for the deploy/ tests: the repository root and the settings' environment names."""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import AliasChoices

from services.chassis.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]

SERVICE_SETTINGS = {
    "scheduler": "services.scheduler.settings:SchedulerSettings",
    "monitoring": "services.monitoring.settings:MonitoringSettings",
    "notifications": "services.notifications.settings:NotificationsSettings",
    "group_matching": "services.group_matching.settings:GroupMatchingSettings",
}


def settings_class(service: str) -> type[ServiceSettings]:
    module, name = SERVICE_SETTINGS[service].split(":")
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), name)
    return cls


def setting_env_names(service: str) -> set[str]:
    """Every environment variable the service's settings read (upper case): ``<PREFIX>_<FIELD>``
    for each field, plus the stack-wide names of the fields that accept them (AliasChoices)."""
    cls = settings_class(service)
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add(prefix + field_name.upper())
    return names


# Read by the program around the settings, not by a settings class.
PROCESS_ENV = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH"}
