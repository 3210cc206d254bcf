"""Notifications' tables.

Escalations and pages (clinicians), patient messages, and the deliveries both go out through.
Every intent is a row with a unique key written before anything is sent, so a redelivered event
or a re-fired timer finds the row and sends nothing new.
"""

from __future__ import annotations

import sqlalchemy as sa

from services.chassis.db import BigIntPK, UtcDateTime, add_chassis_tables

metadata = sa.MetaData()
add_chassis_tables(metadata)

# --- configuration (ops and clinical administrators) ------------------------------------------

escalation_policies = sa.Table(
    "escalation_policies",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # The whole policy as validated data (levels, loops, re-page, business hours): an episode
    # copies it when it starts, so editing a policy never changes an escalation under way.
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("key", "version", name="uq_escalation_policies_key_version"),
)

oncall_schedules = sa.Table(
    "oncall_schedules",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("rotation", sa.JSON, nullable=False),
    # The schedule's ETag: a rotation or override write bumps it (If-Match, 412 when stale).
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

oncall_overrides = sa.Table(
    "oncall_overrides",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "schedule_key",
        sa.String(64),
        sa.ForeignKey("oncall_schedules.key", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("clinician", sa.String(100), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# How to reach a clinician (personal data: never logged, never in an event).
clinician_contacts = sa.Table(
    "clinician_contacts",
    metadata,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("methods", sa.JSON, nullable=False),  # [{"channel": "sms", "address": "+1..."}]
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Care teams: each routes severities to its own policies; a patient belongs to at most one.
care_teams = sa.Table(
    "care_teams",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("routes", sa.JSON, nullable=False),  # {"RED": "policy-key", "AMBER": ...}
    sa.Column("is_default", sa.Boolean, nullable=False),  # patients of no team follow it
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

care_team_patients = sa.Table(
    "care_team_patients",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column(
        "team_key",
        sa.String(64),
        sa.ForeignKey("care_teams.key", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("assigned_by", sa.String(100), nullable=False),
    sa.Column("assigned_at", UtcDateTime, nullable=False),
)

# A clinician's own order of channels with delays (push now, SMS after 2 min ...).
clinician_notification_rules = sa.Table(
    "clinician_notification_rules",
    metadata,
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("rules", sa.JSON, nullable=False),  # [{"channel": "sms", "delay_minutes": 2}]
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# --- escalations and pages ---------------------------------------------------------------------

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("episode_id", sa.Uuid, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("family", sa.String(40), nullable=True),
    sa.Column("reason_codes", sa.JSON, nullable=False),
    sa.Column("threshold_event_id", sa.Uuid, nullable=False),
    sa.Column("policy_key", sa.String(64), nullable=False),
    sa.Column("policy_version", sa.Integer, nullable=False),
    sa.Column("policy", sa.JSON, nullable=False),  # the definition it started with
    # triggered | acknowledged | resolved | superseded (by a RED for the same episode) | exhausted
    sa.Column("status", sa.String(20), nullable=False),
    # Where the policy stands: cycle counts re-triggers (re-page after an unresolved ack).
    sa.Column("cycle", sa.Integer, nullable=False),
    sa.Column("loop", sa.Integer, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("next_step_key", sa.String(120), nullable=True),
    sa.Column("next_step_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("acknowledged_at", UtcDateTime, nullable=True),
    sa.Column("acknowledged_by", sa.String(100), nullable=True),
    sa.Column("acknowledged_via", sa.String(20), nullable=True),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("resolution", sa.String(40), nullable=True),
    sa.UniqueConstraint("episode_id", "severity", name="uq_escalations_episode_severity"),
    # GET /escalations: newest first, a (created_at, id) keyset cursor.
    sa.Index("ix_escalations_created_at_id", "created_at", "id"),
)

# Episodes monitoring resolved: an EscalationResolved can overtake its ThresholdExceeded (two
# topics, no order between them); the late ThresholdExceeded must then page nobody.
resolved_episodes = sa.Table(
    "resolved_episodes",
    metadata,
    sa.Column("episode_id", sa.Uuid, primary_key=True),
    sa.Column("resolution", sa.String(40), nullable=False),
    sa.Column("resolved_at", UtcDateTime, nullable=False),
)

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("escalation_id", sa.Uuid, nullable=True, index=True),  # null: before policies
    sa.Column("episode_id", sa.Uuid, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("cycle", sa.Integer, nullable=False, server_default="0"),
    sa.Column("loop", sa.Integer, nullable=False, server_default="0"),
    sa.Column("level", sa.Integer, nullable=False),
    # The clinician paged, or "fallback" for the organisation's pager when nobody is reachable.
    sa.Column("target", sa.String(100), nullable=False, server_default="fallback"),
    sa.Column("reason_codes", sa.JSON, nullable=False),
    sa.Column("dedup_key", sa.String(160), nullable=False, unique=True),
    sa.Column("threshold_event_id", sa.Uuid, nullable=False),
    # pending | delivered (a channel accepted it) | undeliverable (every channel gave up)
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    # One page per episode, severity, step of the policy and person: ever.
    sa.UniqueConstraint(
        "episode_id", "severity", "cycle", "loop", "level", "target", name="uq_pages_step_target"
    ),
)

# --- patients ---------------------------------------------------------------------------------

# Contact details and preferences are PHI: read only through audited endpoints and the sender.
patient_profiles = sa.Table(
    "patient_profiles",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("channels", sa.JSON, nullable=False),  # ordered preference: ["sms", "email"]
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("phone", sa.String(20), nullable=True),
    sa.Column("quiet_start", sa.Time, nullable=False),
    sa.Column("quiet_end", sa.Time, nullable=False),
    sa.Column("opted_out", sa.JSON, nullable=False),  # message kinds, or ["all"]
    sa.Column("include_dose_details", sa.Boolean, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

patient_messages = sa.Table(
    "patient_messages",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column(
        "kind", sa.String(30), nullable=False
    ),  # dose_changed | check_in_due | cohort_assigned
    sa.Column("source_event_id", sa.Uuid, nullable=False),
    sa.Column("template", sa.String(60), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    # scheduled | deferred (quiet hours) | sent | skipped (opted out, no channel) | failed
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("skip_reason", sa.String(40), nullable=True),
    sa.Column("send_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("source_event_id", "kind", name="uq_patient_messages_source"),
)

# Valid events for a patient without a notification profile yet: kept (not dead-lettered) and
# released when the profile is saved (service_layer/waiting_for_profile.py).
parked_patient_events = sa.Table(
    "parked_patient_events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False, index=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),  # the event as published (PHI: never logged)
    sa.Column("status", sa.String(12), nullable=False),  # parked | released
    # On release: recorded (a patient_messages row, maybe skipped by its own rules) | superseded
    sa.Column("outcome", sa.String(20), nullable=True),
    sa.Column("parked_at", UtcDateTime, nullable=False),
    sa.Column("released_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("event_id", "kind", name="uq_parked_patient_events_event_kind"),
)

# --- deliveries: one per page or message and channel ------------------------------------------

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("owner_kind", sa.String(10), nullable=False),  # page | message
    sa.Column("owner_id", sa.Uuid, nullable=False),
    sa.Column("channel", sa.String(10), nullable=False),  # webhook | email | sms
    # The provider's dedup key: the same on every retry, so a resend after a crash is collapsed.
    sa.Column("idempotency_key", sa.String(160), nullable=False, unique=True),
    # pending | sending (claimed: the provider may have it) | sent | failed (gave up after
    # retries) | rejected (provider refused) | cancelled
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    # The claim, committed before each provider call (service_layer/delivery.py): its number,
    # when, and until when the sender owns it. A "sending" row past its lease is in doubt.
    sa.Column("claim", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_at", UtcDateTime, nullable=True),
    sa.Column("lease_expires_at", UtcDateTime, nullable=True),
    sa.Column("doubts", sa.Integer, nullable=False, server_default="0"),  # in-doubt recoveries
    sa.UniqueConstraint("owner_kind", "owner_id", "channel", name="uq_deliveries_owner_channel"),
    sa.Index("ix_deliveries_owner", "owner_kind", "owner_id"),
)

# --- the live-update feed (server-sent events) ---------------------------------------------------

# What the event streams tell clients (service_layer/feed.py): a row per change, written in the
# transaction of the change itself (nothing announced that did not commit, nothing committed
# missed), read by every replica's streams by id. PHI-minimal: ids, statuses, levels, kinds; the
# client reads the rest through its own authorized GET.
event_feed = sa.Table(
    "event_feed",
    metadata,
    # The SSE ``id:``; ids are assigned in commit order (feed.py), so "after id N" misses nothing.
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("audience", sa.String(10), nullable=False),  # clinician | patient
    sa.Column("patient_id", sa.Uuid, nullable=False),
    # A clinician paged for an escalation sees its events without the patient on their panel.
    sa.Column("escalation_id", sa.Uuid, nullable=True),
    sa.Column("type", sa.String(40), nullable=False),  # escalation.opened, dose.changed ...
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # A stream's poll: its audience (and patient) after the last id it sent.
    sa.Index("ix_event_feed_audience_id", "audience", "id"),
    sa.Index("ix_event_feed_patient_id_id", "patient_id", "id"),
    sa.Index("ix_event_feed_created_at", "created_at"),  # retention
    # SQLite (development) must never reuse an id once retention emptied the table.
    sqlite_autoincrement=True,
)
