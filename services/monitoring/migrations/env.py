from services.chassis.migrations import run_env
from services.monitoring.adapters.orm import metadata

run_env(metadata)
