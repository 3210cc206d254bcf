"""The four services' composition roots, for tests that sweep every service (authorization
matrix, API fuzzing): one SQLite runtime each, no broker started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.chassis.runtime import ServiceRuntime
from services.group_matching.bootstrap import bootstrap as group_matching
from services.group_matching.settings import GroupMatchingSettings
from services.monitoring.bootstrap import bootstrap as monitoring
from services.monitoring.settings import MonitoringSettings
from services.notifications.bootstrap import bootstrap as notifications
from services.notifications.settings import NotificationsSettings
from services.scheduler.bootstrap import bootstrap as scheduler
from services.scheduler.settings import SchedulerSettings

SERVICES: dict[str, tuple[Callable[..., ServiceRuntime], type[Any]]] = {
    "scheduler": (scheduler, SchedulerSettings),
    "monitoring": (monitoring, MonitoringSettings),
    "notifications": (notifications, NotificationsSettings),
    "group_matching": (group_matching, GroupMatchingSettings),
}


def sqlite_runtime(name: str, directory: Path) -> ServiceRuntime:
    """``name``'s runtime on a fresh SQLite file in ``directory`` (migrate it before use)."""
    make, settings_cls = SERVICES[name]
    settings = settings_cls(
        database_url=f"sqlite+aiosqlite:///{directory}/{name}.db",
        environment="test",
        kafka_provision_topics=False,
    )
    return make(settings)
