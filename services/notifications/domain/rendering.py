"""The words on the wire: a stored message rendered for its channel when it is sent. Pure.

A message is rendered when it is sent, not when it is scheduled: the patient may have changed
timezone, language or dose-detail consent in between, and "today" is the send day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from services.notifications.domain.calendar import load_zone
from services.notifications.domain.catalogue import (
    DEFAULT_LANGUAGE,
    MessageChannel,
    catalogue,
    template_named,
)
from services.notifications.domain.drafts import VERSION
from services.notifications.domain.formatting import (
    dose_list,
    drug_name,
    format_day,
    format_mg,
    join_words,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


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
        values["doses"] = dose_list(params["doses"])
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


@dataclass(frozen=True)
class RenderedPage:
    subject: str
    body: str
    acknowledge: str  # the acknowledgement link's text


def render_page(
    *, severity: str, level: int, levels: int, language: str = DEFAULT_LANGUAGE
) -> RenderedPage:
    """A clinician's page in words, from the catalogue's ``pages`` (the current version)."""
    found = catalogue(VERSION)
    wording = found.pages.get(language) or found.pages[DEFAULT_LANGUAGE]
    values = {"severity": severity, "level": str(level), "levels": str(levels)}
    return RenderedPage(
        wording.subject.format_map(values),
        wording.body.format_map(values),
        wording.acknowledge.format_map(values),
    )
