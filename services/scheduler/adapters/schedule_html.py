"""The patient's schedule as one accessible, printable HTML page (issue 13, item 15).

Accessible by construction: ``lang`` from the catalogue, one ``h1`` then ``h2`` sections (today,
next change, the whole plan), a table with a ``caption`` and ``th scope`` on columns and rows,
today's row marked ``aria-current="date"`` and in words (never by colour alone), black on white
(contrast 21:1) at a large base size, and ``@media print`` styles (no background, rows kept
whole). Every text is escaped. The only style is inline, allowed by the page's own
Content-Security-Policy through its SHA-256 hash (``CSP``): no script, no other source.
No PHI beyond the patient's own doses and dates: no name, no identifier on the page.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from services.scheduler.domain.patient_schedule import PatientSchedule, ScheduleRow

STYLE = """
:root { color: #000; background: #fff; }
body { font: 1.125rem/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; padding: 1rem; max-width: 52rem; }
h1 { font-size: 1.75rem; margin: 0 0 .5rem; }
h2 { font-size: 1.375rem; margin: 1.5rem 0 .5rem; }
.now, .next { border: 3px solid #000; padding: .5rem 1rem; }
.next { border-style: dashed; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 700; padding: .5rem 0; }
th, td { border: 1px solid #000; padding: .5rem; text-align: left; vertical-align: top; }
thead th { background: #000; color: #fff; }
tr.today th, tr.today td { background: #fff3a0; font-weight: 700; }
.mark { display: inline-block; border: 2px solid #000; padding: 0 .35rem; margin-left: .35rem;
  font-size: .95rem; font-weight: 700; }
p { margin: .25rem 0; }
@media print {
  body { font-size: 12pt; max-width: none; padding: 0; }
  thead th { background: none; color: #000; border-bottom: 2px solid #000; }
  tr.today th, tr.today td { background: none; }
  tr { break-inside: avoid; }
  .print-hint { display: none; }
}
""".strip()

_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _lines(lines: tuple[str, ...]) -> str:
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def _row(row: ScheduleRow, today_mark: str, next_mark: str) -> str:
    marks = ""
    attrs = ""
    if row.is_today:
        marks += f' <span class="mark">{escape(today_mark)}</span>'
        attrs = ' class="today" aria-current="date"'
    if row.is_next:
        marks += f' <span class="mark">{escape(next_mark)}</span>'
    return (
        f'<tr{attrs}><th scope="row">{escape(row.dates)}{marks}</th>'
        f"<td>{_lines(row.lines)}</td></tr>"
    )


def schedule_to_html(s: PatientSchedule) -> str:
    t = s.text
    current, nxt = s.current, s.next_change
    now = (
        _lines(current.lines) if current is not None else f"<p>{escape(str(t['not_started']))}</p>"
    )
    upcoming = (
        f"<p><strong>{escape(nxt.dates)}</strong></p>{_lines(nxt.lines)}"
        if nxt is not None
        else f"<p>{escape(str(t['no_next']))}</p>"
    )
    rows = "".join(_row(r, str(t["today_mark"]), str(t["next_mark"])) for r in s.rows)
    cols = t["columns"]
    return (
        "<!doctype html>\n"
        f'<html lang="{escape(s.lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(str(t['title']))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<main>\n<h1>{escape(str(t['title']))}</h1>\n"
        f"<p>{escape(str(t['intro']))}</p>\n"
        f'<section class="now" aria-labelledby="today-h">'
        f'<h2 id="today-h">{escape(str(t["today_heading"]))}</h2>'
        f"<p>{escape(s.today_line)}</p>{now}</section>\n"
        f'<section class="next" aria-labelledby="next-h">'
        f'<h2 id="next-h">{escape(str(t["next_heading"]))}</h2>{upcoming}</section>\n'
        f'<section aria-labelledby="plan-h"><h2 id="plan-h">{escape(str(t["plan_heading"]))}</h2>\n'
        f"<table>\n<caption>{escape(str(t['caption']))}</caption>\n"
        f'<thead><tr><th scope="col">{escape(str(cols["dates"]))}</th>'
        f'<th scope="col">{escape(str(cols["doses"]))}</th></tr></thead>\n'
        f"<tbody>{rows}</tbody>\n</table>\n</section>\n"
        f"<p>{escape(str(t['help']))}</p>\n"
        f'<p class="print-hint">{escape(str(t["print_hint"]))}</p>\n'
        "</main>\n</body>\n</html>\n"
    )
