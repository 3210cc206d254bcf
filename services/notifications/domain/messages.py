"""Patient messages: which template and facts a taper event calls for, whether and when it may be
sent, and the words that go on the wire. Pure: no I/O beyond reading the packaged templates.

Minimum necessary PHI. An SMS or email is read on lock screens and shared devices, so by default
a message names no drug and no dose ("Open the app to see your dose"); the ``detail`` variant
states the dose only for a patient who opted in (``include_dose_details``). The loader refuses a
``standard`` variant or a subject that uses a dose placeholder, so a template edit cannot leak
one. Messages never name the patient.

Templates are data (``data/messages.v<N>.json``); a stored message names its template with the
version (``messages.v1:dose_reduced``) so a message written under v1 still renders as v1 after a
v2 ships. A message is rendered when it is sent, not when it is scheduled: the patient may have
changed timezone, language or dose-detail consent in between, and "today" is the send day.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Literal

from services.notifications.domain.calendar import DailyWindow, QuietHours, load_zone, next_allowed

VERSION = "messages.v1"
DEFAULT_LANGUAGE = "en"
LANGUAGES = frozenset({"en"})
ALL = "all"  # opted_out: every kind

MessageChannel = Literal["sms", "email"]
CHANNELS: tuple[MessageChannel, ...] = ("sms", "email")

# The facts a template may use. Dose facts are allowed only in ``detail`` variants' bodies.
DOSE_FIELDS = frozenset({"drug", "drugs", "mg", "previous_mg", "doses"})
FIELDS = DOSE_FIELDS | {"since", "closes"}

# Conservative on purpose (no quoted local parts, no IP literals, no IDN): an address we cannot
# be sure of is refused when it is entered, not bounced when a message is due.
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_VERSION_NAME = re.compile(r"messages\.v[0-9]{1,3}")
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Kind(StrEnum):
    """What a patient can opt out of, one by one."""

    DOSE_CHANGED = "dose_changed"
    CHECK_IN_DUE = "check_in_due"
    COHORT_ASSIGNED = "cohort_assigned"
    SAFETY_NOTICE = "safety_notice"  # RED escalation: help is coming, and who to call now


class Status(StrEnum):
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"  # waiting for quiet hours to end
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class SkipReason(StrEnum):
    OPTED_OUT = "opted_out"
    NO_CHANNEL = "no_channel"
    WINDOW_CLOSED = "window_closed"  # a check-in reminder that could only arrive too late
    CANCELLED = "cancelled"  # not wanted any more at send time, for another reason
    # Parked before the patient had a profile, and a newer change of the same kind was too.
    SUPERSEDED = "superseded"


# --- formatting: locale-neutral English, never the locale of the server ------------------------


def format_mg(mg: Decimal) -> str:
    """``Decimal("7.5000")`` -> ``7.5``, ``10.0000`` -> ``10``, ``100`` -> ``100`` (not 1E+2)."""
    return format(mg.normalize(), "f")


def format_day(day: date) -> str:
    """``Wed 25 Nov``: no year (a message is about this week), no locale-dependent strftime."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def drug_name(code: str) -> str:
    """Scheduler drug codes are lower-case words (``diazepam``); underscores read as spaces."""
    return code.replace("_", " ")


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _dose_list(doses: Sequence[Sequence[str]]) -> str:
    # A drug at 0 mg in a regimen is a drug to stop, which "alprazolam 0 mg" says badly.
    return join_words(
        [
            f"no more {drug_name(d)}"
            if Decimal(mg) == 0
            else f"{drug_name(d)} {format_mg(Decimal(mg))} mg"
            for d, mg in doses
        ]
    )


# --- what to say: a draft per event -------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A message to store: its kind (for opt-out), template id and the facts it may render.

    ``params`` is JSON-ready and holds dose facts only when the patient had opted in to dose
    details when the event arrived (minimum necessary, in our own database too).
    """

    kind: Kind
    template: str
    params: dict[str, Any]

    @property
    def expires_at(self) -> datetime | None:
        return expires_at(self.params)

    @property
    def urgent(self) -> bool:
        return is_urgent(self.params)


def is_urgent(params: Mapping[str, Any]) -> bool:
    """Sent whatever the hour: a patient in danger at 3 a.m. is told where to call at 3 a.m."""
    return params.get("urgent") is True


def expires_at(params: Mapping[str, Any]) -> datetime | None:
    """A reminder that arrives after its window closed is noise: when it stops being worth it."""
    closes = params.get("closes_at")
    return datetime.fromisoformat(closes) if isinstance(closes, str) else None


def template_id(name: str, version: str = VERSION) -> str:
    return f"{version}:{name}"


Regimen = Sequence[tuple[str, Decimal]]


def _doses(regimen: Regimen) -> list[list[str]]:
    return [[drug, format_mg(mg)] for drug, mg in regimen]


def dose_step(
    *,
    step_kind: str | None,
    drug: str,
    previous_mg: Decimal,
    new_mg: Decimal,
    regimen: Regimen | None,
    effective_on: date,
    with_dose: bool,
) -> Draft:
    """A taper step (``DoseReduced``).

    Final means every drug stops (all doses zero), and never a crossover: a crossover can take
    ``drug`` to 0 mg while diazepam continues, which must not read "your taper is complete".
    A crossover without a regimen (events from before regimens) cannot state every drug's dose,
    so it gets no dose facts at all rather than a misleading half of them.
    """
    params: dict[str, Any] = {"effective_on": effective_on.isoformat()}
    doses = list(regimen) if regimen else [(drug, new_mg)]
    final = step_kind != "crossover" and all(mg == 0 for _, mg in doses)
    if final:
        name = "dose_final"
        facts: dict[str, Any] = {"drugs": [d for d, _ in doses]}
    elif regimen is not None and len(regimen) > 1:
        name = "dose_regimen"
        facts = {"doses": _doses(regimen)}
    elif step_kind == "crossover":
        name, facts = "dose_regimen", {}
    else:
        name = "dose_reduced"
        facts = {"drug": drug, "mg": format_mg(new_mg), "previous_mg": format_mg(previous_mg)}
    if with_dose:
        params |= facts
    return Draft(Kind.DOSE_CHANGED, template_id(name), params)


def dose_restored(
    *,
    drug: str,
    restored_mg: Decimal,
    regimen: Regimen,
    effective_on: date,
    with_dose: bool,
) -> Draft:
    """A clinician returned the patient to the previous dose (``DoseRestored``)."""
    params: dict[str, Any] = {"effective_on": effective_on.isoformat()}
    if len(regimen) > 1:
        name = "dose_restored_regimen"
        facts: dict[str, Any] = {"doses": _doses(regimen)}
    else:
        name = "dose_restored"
        facts = {"drug": drug, "mg": format_mg(restored_mg)}
    if with_dose:
        params |= facts
    return Draft(Kind.DOSE_CHANGED, template_id(name), params)


def check_in_due(*, window_closes_at: datetime) -> Draft:
    closes = window_closes_at.astimezone(UTC).isoformat()
    return Draft(Kind.CHECK_IN_DUE, template_id("check_in_due"), {"closes_at": closes})


def safety_notice() -> Draft:
    """On a RED escalation: the care team has been alerted; emergency numbers (⚠ data, US)."""
    return Draft(Kind.SAFETY_NOTICE, template_id("safety_notice"), {"urgent": True})


def cohort_assigned(*, moved: bool) -> Draft:
    name = "cohort_moved" if moved else "cohort_assigned"
    return Draft(Kind.COHORT_ASSIGNED, template_id(name), {})


def cohort_left() -> Draft:
    """Taken out of a cohort by a change of stage or a cohort closing (not by their own choice)."""
    return Draft(Kind.COHORT_ASSIGNED, template_id("cohort_left"), {})


# --- whether and when: preferences and the decision ---------------------------------------------


class InvalidPreferences(ValueError):
    """A preference that cannot be stored; ``field`` names it (for a 422 pointing at it)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class QuietDefault:
    window: DailyWindow
    source: str
    configurable: bool


@dataclass(frozen=True)
class Defaults:
    language: str
    include_dose_details: bool
    quiet_hours: QuietDefault


@cache
def defaults(version: str = VERSION) -> Defaults:
    raw = _catalogue(version).raw["defaults"]
    quiet = raw["quiet_hours"]
    return Defaults(
        language=raw["language"],
        include_dose_details=bool(raw["include_dose_details"]),
        quiet_hours=QuietDefault(
            DailyWindow(time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])),
            quiet["source"],
            bool(quiet["configurable"]),
        ),
    )


def _default_quiet() -> DailyWindow:
    return defaults().quiet_hours.window


@dataclass(frozen=True)
class Preferences:
    """How and when a patient wants to hear from us. Contact details are PHI: never log them."""

    timezone: str  # IANA
    channels: tuple[MessageChannel, ...]  # in order of preference; may be empty
    email: str | None = None
    phone: str | None = None  # E.164
    language: str = DEFAULT_LANGUAGE
    quiet: DailyWindow = field(default_factory=_default_quiet)
    opted_out: frozenset[str] = frozenset()  # Kind values, or "all"
    include_dose_details: bool = False

    def __post_init__(self) -> None:
        try:
            load_zone(self.timezone)
        except ValueError:
            raise InvalidPreferences("timezone", "unknown IANA timezone") from None
        if self.language not in LANGUAGES:
            raise InvalidPreferences("language", f"supported: {', '.join(sorted(LANGUAGES))}")
        if any(c not in CHANNELS for c in self.channels):
            raise InvalidPreferences("channels", "each channel is sms or email")
        if len(set(self.channels)) != len(self.channels):
            raise InvalidPreferences("channels", "a channel is listed twice")
        if self.email is not None and not EMAIL.fullmatch(self.email):
            raise InvalidPreferences("email", "not an email address we can send to")
        if self.phone is not None and not E164.fullmatch(self.phone):
            raise InvalidPreferences("phone", "not an E.164 number (+ and up to 15 digits)")
        if unknown := set(self.opted_out) - {ALL, *Kind}:
            raise InvalidPreferences("opted_out", f"unknown kinds: {', '.join(sorted(unknown))}")
        for channel in self.channels:
            if self.address_for(channel) is None:
                address = _ADDRESS_FIELD[channel]
                raise InvalidPreferences(address, f"required when channels includes {channel}")

    def address_for(self, channel: str) -> str | None:
        return self.phone if channel == "sms" else self.email if channel == "email" else None

    def reachable(self, channel: str) -> str | None:
        """The address to use on ``channel`` now, if the patient still wants that channel."""
        return self.address_for(channel) if channel in self.channels else None

    def first_reachable(self) -> MessageChannel | None:
        return next((c for c in self.channels if self.address_for(c)), None)

    def opted_out_of(self, kind: Kind | str) -> bool:
        return ALL in self.opted_out or str(kind) in self.opted_out

    @property
    def quiet_hours(self) -> QuietHours:
        return QuietHours(self.timezone, self.quiet)


_ADDRESS_FIELD: dict[str, str] = {"sms": "phone", "email": "email"}


@dataclass(frozen=True)
class Decision:
    status: Status
    send_at: datetime
    channel: MessageChannel | None = None
    skip_reason: SkipReason | None = None


def decide(prefs: Preferences, draft: Draft, now: datetime) -> Decision:
    """Skip (opted out, nowhere to send, too late to be useful) or schedule: now, or when the
    patient's quiet hours end (then ``deferred``)."""
    if prefs.opted_out_of(draft.kind):
        return Decision(Status.SKIPPED, now, skip_reason=SkipReason.OPTED_OUT)
    channel = prefs.first_reachable()
    if channel is None:
        return Decision(Status.SKIPPED, now, skip_reason=SkipReason.NO_CHANNEL)
    send_at = now if draft.urgent else next_allowed(now, prefs.quiet_hours)
    closes = draft.expires_at
    if closes is not None and send_at >= closes:
        return Decision(Status.SKIPPED, send_at, skip_reason=SkipReason.WINDOW_CLOSED)
    status = Status.SCHEDULED if send_at == now else Status.DEFERRED
    return Decision(status, send_at, channel)


# --- the words: templates and rendering ---------------------------------------------------------


@dataclass(frozen=True)
class Text:
    subject: str
    body: str
    fields: frozenset[str]


@dataclass(frozen=True)
class Variants:
    standard: Mapping[str, Text]  # channel -> text
    detail: Mapping[str, Text] | None


@dataclass(frozen=True)
class Template:
    kind: Kind
    languages: Mapping[str, Variants]


@dataclass(frozen=True)
class Catalogue:
    version: str
    raw: Mapping[str, Any]
    templates: Mapping[str, Template]
    footers: Mapping[str, Mapping[str, str]]  # language -> channel -> footer


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _fields(text: str, where: str) -> frozenset[str]:
    names: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in FIELDS or spec or conversion:
            raise ValueError(f"{where}: placeholder {{{name}}} is not one of {sorted(FIELDS)}")
        names.add(name)
    return frozenset(names)


def _text(raw: Any, where: str, *, dose_allowed: bool) -> Text:
    if not isinstance(raw, dict) or set(raw) != {"subject", "body"}:
        raise ValueError(f"{where}: needs exactly a subject and a body")
    subject, body = raw["subject"], raw["body"]
    if not (isinstance(subject, str) and isinstance(body, str) and subject and body):
        raise ValueError(f"{where}: subject and body are non-empty strings")
    if _fields(subject, f"{where}.subject"):
        raise ValueError(f"{where}.subject: no placeholders (subjects show on lock screens)")
    fields = _fields(body, f"{where}.body")
    if not dose_allowed and fields & DOSE_FIELDS:
        raise ValueError(f"{where}: only a detail variant may state drug or dose")
    return Text(subject, body, fields)


def parse_catalogue(raw: Mapping[str, Any]) -> Catalogue:
    """Build and check a template file; a bad one raises ``ValueError`` naming the place."""
    version = raw.get("version")
    if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version):
        raise ValueError("version must look like messages.v1")
    footers = raw.get("footers")
    if not isinstance(footers, dict):
        raise ValueError("footers must map language -> channel -> text")
    for language in LANGUAGES:
        for channel in CHANNELS:
            if not isinstance(footers.get(language, {}).get(channel), str):
                raise ValueError(f"footers.{language}.{channel} is missing")
    if "STOP" not in footers[DEFAULT_LANGUAGE]["sms"]:
        raise ValueError("the SMS footer must say how to opt out (STOP)")
    templates: dict[str, Template] = {}
    for name, spec in raw.get("templates", {}).items():
        if not _TEMPLATE_NAME.fullmatch(name):
            raise ValueError(f"templates.{name}: bad template name")
        kind = Kind(spec.get("kind"))
        languages: dict[str, Variants] = {}
        for language, variants in spec.items():
            if language == "kind":
                continue
            if language not in LANGUAGES:
                raise ValueError(f"templates.{name}.{language}: unsupported language")
            if not isinstance(variants, dict) or set(variants) - {"standard", "detail"}:
                raise ValueError(f"templates.{name}.{language}: variants are standard and detail")
            parsed: dict[str, dict[str, Text]] = {}
            for variant, by_channel in variants.items():
                where = f"templates.{name}.{language}.{variant}"
                if not isinstance(by_channel, dict) or set(by_channel) != set(CHANNELS):
                    raise ValueError(f"{where}: needs exactly {list(CHANNELS)}")
                parsed[variant] = {
                    c: _text(by_channel[c], f"{where}.{c}", dose_allowed=variant == "detail")
                    for c in CHANNELS
                }
            if "standard" not in parsed:
                raise ValueError(f"templates.{name}.{language}: the standard variant is required")
            languages[language] = Variants(parsed["standard"], parsed.get("detail"))
        if DEFAULT_LANGUAGE not in languages:
            raise ValueError(f"templates.{name}: needs the {DEFAULT_LANGUAGE} language")
        templates[name] = Template(kind, languages)
    if not templates:
        raise ValueError("no templates")
    return Catalogue(version, raw, templates, footers)


@cache
def _catalogue(version: str) -> Catalogue:
    if not _VERSION_NAME.fullmatch(version):
        raise ValueError("unknown template version")
    data = resources.files(__package__).joinpath("data", f"{version}.json")
    catalogue = parse_catalogue(json.loads(data.read_text(encoding="utf-8")))
    if catalogue.version != version:
        raise ValueError(f"{version}.json declares version {catalogue.version}")
    return catalogue


def template_named(template: str) -> tuple[Catalogue, Template]:
    """The catalogue and template a stored id (``messages.v1:dose_reduced``) refers to."""
    version, _, name = template.partition(":")
    catalogue = _catalogue(version)
    try:
        return catalogue, catalogue.templates[name]
    except KeyError:
        raise ValueError("unknown template") from None


def _values(params: Mapping[str, Any], timezone: str, now: datetime) -> dict[str, str]:
    """Placeholder values from stored facts, dates in the patient's timezone on the send day."""
    zone = load_zone(timezone)
    today = now.astimezone(zone).date()
    values: dict[str, str] = {}
    if "effective_on" in params:
        day = date.fromisoformat(params["effective_on"])
        values["since"] = f"today, {format_day(day)}" if day == today else format_day(day)
    if "closes_at" in params:
        local = datetime.fromisoformat(params["closes_at"]).astimezone(zone)
        values["closes"] = f"{local:%H:%M} on {format_day(local.date())}"
    if "drug" in params:
        values["drug"] = drug_name(params["drug"])
    for key in ("mg", "previous_mg"):
        if key in params:
            values[key] = format_mg(Decimal(params[key]))
    if "doses" in params:
        values["doses"] = _dose_list(params["doses"])
    if "drugs" in params:
        values["drugs"] = join_words([drug_name(d) for d in params["drugs"]])
    return values


def render(
    template: str,
    params: Mapping[str, Any],
    *,
    channel: MessageChannel,
    language: str,
    details: bool,
    timezone: str,
    now: datetime,
) -> Rendered:
    """The subject and plain-text body for ``channel``.

    The ``detail`` variant needs both the patient's consent now (``details``) and the dose facts
    stored with the message (present only if they had consented when it was scheduled): consent
    withdrawn in between wins, and consent given in between cannot conjure facts we never kept.
    """
    catalogue, found = template_named(template)
    variants = found.languages.get(language) or found.languages[DEFAULT_LANGUAGE]
    footers = catalogue.footers.get(language) or catalogue.footers[DEFAULT_LANGUAGE]
    values = _values(params, timezone, now)
    text = variants.standard[channel]
    if details and variants.detail is not None and variants.detail[channel].fields <= set(values):
        text = variants.detail[channel]
    if missing := text.fields - set(values):
        raise ValueError(f"{template}: params lack {sorted(missing)}")
    # SMS is billed per segment: the opt-out hint goes on the next line, not after a blank one.
    gap = "\n" if channel == "sms" else "\n\n"
    return Rendered(text.subject, text.body.format_map(values) + gap + footers[channel])
