"""``python -m services.notifications.entrypoints.main``: run notifications as its own process."""

from services.chassis.logs import configure_logging
from services.notifications.bootstrap import bootstrap
from services.notifications.settings import NotificationsSettings


def main() -> None:
    settings = NotificationsSettings()
    configure_logging(settings.service_name, settings.log_level)
    bootstrap(settings).serve()


if __name__ == "__main__":
    main()
