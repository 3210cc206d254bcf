"""``python -m services.group_matching.entrypoints.main``: run group matching as its own process."""

from services.chassis.logs import configure_logging
from services.group_matching.bootstrap import bootstrap
from services.group_matching.settings import GroupMatchingSettings


def main() -> None:
    settings = GroupMatchingSettings()
    configure_logging(settings.service_name, settings.log_level)
    bootstrap(settings).serve()


if __name__ == "__main__":
    main()
