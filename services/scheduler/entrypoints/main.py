"""``python -m services.scheduler.entrypoints.main``: run the scheduler as its own process."""

from services.chassis.logs import configure_logging
from services.scheduler.bootstrap import bootstrap
from services.scheduler.settings import SchedulerSettings


def main() -> None:
    settings = SchedulerSettings()
    configure_logging(settings.service_name, settings.log_level)
    bootstrap(settings).serve()


if __name__ == "__main__":
    main()
