from services.chassis.migrations import run_env
from services.group_matching.adapters.orm import metadata

run_env(metadata)
