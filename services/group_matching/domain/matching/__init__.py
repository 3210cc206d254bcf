"""Peer-cohort matching (issue 6): which waiting patient joins which live peer-support group.

Pure: no I/O apart from reading the versioned reference data in ``data/matching.v1.json``; the
clock is an argument (``now``). Stdlib only.

The model (clinical-reference §5)
---------------------------------
A **candidate** is a waiting patient (an opaque id and the few attributes matching needs). A
**cohort** is a weekly live group with a *profile*: language, stage group, weekly session start
(minute of the day, UTC), drug and diazepam status. Existing groups with empty seats come in as
``OpenCohort``; the run may also form ``NewCohort``s. Whoever is not placed stays on the waitlist.

Hard constraints (a pair that breaks one scores ``None``, "not allowed"):

* same language (BCP 47 primary tag);
* same stage group. Groups come from the reference's cohort keys (pre-taper/crossover, active,
  final phase, held, post-taper < 6 months, post-taper >= 6 months) and, checked on load, never
  mix a tapering stage with a post-taper one: §5 asks to keep people with acute symptoms apart
  from protracted-recovery groups;
* the session starts and ends inside the patient's local window (⚠ 09:00-21:00, 60 min), using
  the patient's UTC offset at matching time. Offsets change with daylight saving, so the service
  re-checks on each run;
* an existing cohort takes at most ``capacity - size`` new members; a new cohort has between
  ``min_size`` and ``max_size`` members (⚠ 6-10 from §5). A new cohort starts on the session grid
  (every ``grid_minutes`` UTC);
* each patient is placed at most once.

The objective (the exact solver in ``tests/group_matching_exact.py`` maximises exactly this)
------------------------------------------------------------------------------------------
``total = sum over placed patients p in cohort c of s(p, c)``; a waiting patient adds 0. With W
the weights and ``local = (c.session_utc_minute + p.utc_offset_minutes) mod 1440``::

    s(p, c) = W.placement
            + W.existing_cohort      * [c is an existing cohort]
            + W.same_drug            * [p.drug == c.drug]
            + W.same_diazepam_status * [p.on_diazepam == c.on_diazepam]
            + W.session_time         * (1 - |local - mid| / half)
            + W.waiting              * min(1, days_waited(p, now) / waiting_full_after_days)

where ``[earliest, latest]`` is the window of allowed local starts (window start to window end
minus the session length), ``mid`` its middle and ``half`` half its width (``session_time`` is
``W.session_time`` when ``half`` is 0). The session term is what keeps members' timezones close:
the further a member's offset is from the others', the further the shared start is from the
middle of their day. A new cohort's drug and diazepam status are chosen by the run (the
members' majority maximises the sum); they describe the group, they admit nobody.
``placement`` (60) is worth more than everything else one patient can gain or lose (45 at
most), so placing people comes first and preferences second; the waiting term gives the
longest-waiting priority when seats run short.

The heuristic
-------------
Per hard key (language, stage group), independently:

1. **Sweep.** Candidates are sorted round the clock by UTC offset (the circle cut at a gap
   between offsets), then drug, status and longest wait. A dynamic programme over that order cuts
   it into consecutive runs of ``min_size..max_size`` members, or skips a candidate, maximising
   the exact score of each run as a new cohort: its best grid start (a grid neighbour of the
   median member's ideal start, clamped to what every member allows, by prefix sums) plus its
   majority drug and status. ``O(n * max_size)`` after an ``O(n log n)`` sort.
2. **Existing cohorts** take waiting candidates, best pair first, within their room (a heap over
   look-alike types rather than all pairs).
3. **Local improvement**, every step strictly improving the objective: move a candidate into a
   cohort with room; swap two candidates between cohorts, or with the waitlist; re-choose each
   new cohort's start, drug and status for its members; let a waiting candidate take a seat whose
   holder moves on to a cohort with room; form a new cohort around waiting candidates with seats
   given up by cohorts above their minimum.

Small keys (up to 80 candidates and 30 open cohorts) build several drafts (a cut at each gap
between offsets; mixed or same-drug cohorts first; existing cohorts filled before or after the
sweep), improve each distinct draft with the full neighbourhood and keep the best. Large keys
build one draft (widest-gap cut, existing cohorts first), skip the last two steps, swap only
with the waitlist and look only at the nearest cohorts round the clock, for two rounds: 100k
candidates take about three seconds.

Everything is deterministic: inputs are sorted by id first, ties break on ids, and the result
does not depend on input order.

Where things are
----------------
``config`` (stages, stage groups, weights, the reference file), ``inputs`` (candidates, cohorts,
results), ``scoring`` (``s(p, c)``), ``constraints`` (input validation, ``check_result`` and
``total_score``), ``heuristic`` (``match``, the drafts of a key), ``key_matcher`` (one key's
state), ``sweep`` (step 1), ``existing_seats`` (step 2), ``local_search`` and ``repair``
(step 3). Everything public is imported here: ``from ...domain.matching import match``.
"""

from services.group_matching.domain.matching.config import (
    ACTIVE,
    CROSSOVER,
    FINAL_PHASE,
    HELD,
    MATCHING_STAGES,
    MINUTES_PER_DAY,
    POST_TAPER_EARLY,
    POST_TAPER_LATE,
    PRE_TAPER,
    InfeasibleResult,
    InvalidMatchingInput,
    MatchingConfig,
    Weights,
    config_from_dict,
    matching_v1,
)
from services.group_matching.domain.matching.constraints import check_result, total_score
from services.group_matching.domain.matching.heuristic import match
from services.group_matching.domain.matching.inputs import (
    Candidate,
    CohortLike,
    MatchResult,
    NewCohort,
    OpenCohort,
    Placement,
    new_cohort_key,
)
from services.group_matching.domain.matching.scoring import score_pair, waiting_points

__all__ = [
    "ACTIVE",
    "CROSSOVER",
    "FINAL_PHASE",
    "HELD",
    "MATCHING_STAGES",
    "MINUTES_PER_DAY",
    "POST_TAPER_EARLY",
    "POST_TAPER_LATE",
    "PRE_TAPER",
    "Candidate",
    "CohortLike",
    "InfeasibleResult",
    "InvalidMatchingInput",
    "MatchResult",
    "MatchingConfig",
    "NewCohort",
    "OpenCohort",
    "Placement",
    "Weights",
    "check_result",
    "config_from_dict",
    "match",
    "matching_v1",
    "new_cohort_key",
    "score_pair",
    "total_score",
    "waiting_points",
]
