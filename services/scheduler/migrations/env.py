from services.chassis.migrations import run_env
from services.scheduler.adapters.orm import metadata

run_env(metadata)
