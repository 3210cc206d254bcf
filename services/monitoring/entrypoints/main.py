"""``python -m services.monitoring.entrypoints.main``: run monitoring as its own process."""

from services.chassis.logs import configure_logging
from services.monitoring.bootstrap import bootstrap
from services.monitoring.settings import MonitoringSettings


def main() -> None:
    settings = MonitoringSettings()
    configure_logging(settings.service_name, settings.log_level)
    bootstrap(settings).serve()


if __name__ == "__main__":
    main()
