"""The objective: ``s(p, c)``, what placing candidate p in cohort c is worth (the package
docstring has the formula), ``None`` when a hard constraint forbids the pair."""

from __future__ import annotations

from datetime import datetime

from services.group_matching.domain.matching.config import MINUTES_PER_DAY, MatchingConfig
from services.group_matching.domain.matching.inputs import Candidate, CohortLike


def waiting_points(candidate: Candidate, config: MatchingConfig, now: datetime) -> float:
    days = (now - candidate.waiting_since).total_seconds() / 86400
    return config.weights.waiting * min(1.0, max(0.0, days) / config.waiting_full_after_days)


def _time_points(local: int, config: MatchingConfig) -> float:
    earliest, latest = config.earliest_start, config.latest_start
    half = (latest - earliest) / 2
    if half == 0:
        return config.weights.session_time
    return config.weights.session_time * (1 - abs(local - (earliest + latest) / 2) / half)


def score_pair(
    candidate: Candidate, cohort: CohortLike, config: MatchingConfig, now: datetime
) -> float | None:
    """``s(p, c)`` of the module docstring; ``None`` when a hard constraint forbids the pair.

    Capacity and cohort sizes are about the whole result; ``check_result`` checks them."""
    if candidate.language != cohort.language:
        return None
    if config.stage_group(candidate.stage) != cohort.stage_group:
        return None
    local = (cohort.session_utc_minute + candidate.utc_offset_minutes) % MINUTES_PER_DAY
    if not config.earliest_start <= local <= config.latest_start:
        return None
    w = config.weights
    total = w.placement
    if cohort.existing:
        total += w.existing_cohort
    if candidate.drug == cohort.drug:
        total += w.same_drug
    if candidate.on_diazepam == cohort.on_diazepam:
        total += w.same_diazepam_status
    return total + _time_points(local, config) + waiting_points(candidate, config, now)
