"""The four services' runtimes, built only to read their API documents (``deploy.openapi``,
``deploy.asyncapi``): nothing is connected, and no machine address ends up in a document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.chassis.runtime import ServiceRuntime

DOC_BOOTSTRAP = "kafka:9092"  # a stable placeholder: documents must not depend on the machine


def doc_runtimes(**settings: Any) -> dict[str, Callable[[str], ServiceRuntime]]:
    """service name -> build its runtime given a directory for a throwaway SQLite database.

    ``settings`` are added to every service's settings (the Kafka placeholder and the database
    are always set).
    """
    from services.group_matching.bootstrap import bootstrap as gm
    from services.group_matching.settings import GroupMatchingSettings
    from services.monitoring.bootstrap import bootstrap as mon
    from services.monitoring.settings import MonitoringSettings
    from services.notifications.bootstrap import bootstrap as notif
    from services.notifications.settings import NotificationsSettings
    from services.scheduler.bootstrap import bootstrap as sched
    from services.scheduler.settings import SchedulerSettings

    def make(cls: Any, db_dir: str) -> Any:
        return cls(
            **settings,
            kafka_bootstrap_servers=DOC_BOOTSTRAP,
            database_url=f"sqlite+aiosqlite:///{db_dir}/doc.db",
        )

    return {
        "scheduler": lambda d: sched(make(SchedulerSettings, d)),
        "monitoring": lambda d: mon(make(MonitoringSettings, d)),
        "notifications": lambda d: notif(make(NotificationsSettings, d)),
        "group_matching": lambda d: gm(make(GroupMatchingSettings, d)),
    }
