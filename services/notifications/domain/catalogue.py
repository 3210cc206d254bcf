"""The message catalogue: templates as data (``data/messages.v<N>.json``), parsed and checked.

The loader refuses a ``standard`` variant or a subject that uses a dose placeholder, so a template
edit cannot leak one; every template has the default language; the SMS footer says how to opt
out. The same catalogue holds the wording of clinicians' pages (``pages``). Pure: no I/O beyond
reading the packaged templates.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from services.notifications.domain.drafts import Kind

DEFAULT_LANGUAGE = "en"
LANGUAGES = frozenset({"en"})

MessageChannel = Literal["sms", "email"]
CHANNELS: tuple[MessageChannel, ...] = ("sms", "email")

# The facts a template may use. Dose facts are allowed only in ``detail`` variants' bodies.
DOSE_FIELDS = frozenset({"drug", "drugs", "mg", "previous_mg", "doses"})
FIELDS = DOSE_FIELDS | {"since", "closes"}
PAGE_FIELDS = frozenset({"severity", "level", "levels"})  # a page's facts: no PHI
_VERSION_NAME = re.compile(r"messages\.v[0-9]{1,3}")
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


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
class PageText:
    """A clinician's page: subject and body (placeholders ``PAGE_FIELDS``), the ack link's text.

    SMS and email leave our systems: no patient id, no reasons (minimum necessary)."""

    subject: str
    body: str
    acknowledge: str


@dataclass(frozen=True)
class Catalogue:
    version: str
    raw: Mapping[str, Any]
    templates: Mapping[str, Template]
    footers: Mapping[str, Mapping[str, str]]  # language -> channel -> footer
    pages: Mapping[str, PageText]  # language -> a page's wording


def _fields(text: str, where: str, allowed: frozenset[str] = FIELDS) -> frozenset[str]:
    names: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise ValueError(f"{where}: placeholder {{{name}}} is not one of {sorted(allowed)}")
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
    return Catalogue(version, raw, templates, footers, _pages(raw.get("pages")))


def _pages(raw: Any) -> dict[str, PageText]:
    if not isinstance(raw, dict) or DEFAULT_LANGUAGE not in raw:
        raise ValueError(f"pages must map language -> wording, with {DEFAULT_LANGUAGE}")
    pages: dict[str, PageText] = {}
    for language, wording in raw.items():
        where = f"pages.{language}"
        if language not in LANGUAGES:
            raise ValueError(f"{where}: unsupported language")
        if not isinstance(wording, dict) or set(wording) != {"subject", "body", "acknowledge"}:
            raise ValueError(f"{where}: needs exactly a subject, a body and an acknowledge")
        for part, text in wording.items():
            if not isinstance(text, str) or not text:
                raise ValueError(f"{where}.{part}: a non-empty string")
            _fields(text, f"{where}.{part}", PAGE_FIELDS)
        pages[language] = PageText(wording["subject"], wording["body"], wording["acknowledge"])
    return pages


@cache
def catalogue(version: str) -> Catalogue:
    if not _VERSION_NAME.fullmatch(version):
        raise ValueError("unknown template version")
    data = resources.files(__package__).joinpath("data", f"{version}.json")
    parsed = parse_catalogue(json.loads(data.read_text(encoding="utf-8")))
    if parsed.version != version:
        raise ValueError(f"{version}.json declares version {parsed.version}")
    return parsed


def template_named(template: str) -> tuple[Catalogue, Template]:
    """The catalogue and template a stored id (``messages.v1:dose_reduced``) refers to."""
    version, _, name = template.partition(":")
    found = catalogue(version)
    try:
        return found, found.templates[name]
    except KeyError:
        raise ValueError("unknown template") from None
