"""A patient's ``Trend`` (domain/trend.py) drawn as SVG (pure strings), dose steps marked.

Readable at a glance by a clinician and a patient: one line of totals (``class="score"``, each
point a ``<circle>`` with a ``<title>`` giving date, total and band), the rule thresholds as
horizontal lines (``class="threshold"``: AMBER and RED where the instrument has them), and each dose
step as a dashed vertical line (``class="dose-step"``). No patient information is drawn.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from services.monitoring.domain.trend import Trend

WIDTH, HEIGHT = 800, 400
LEFT, RIGHT, TOP, BOTTOM = 60, 30, 50, 60


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def trend_to_svg(trend: Trend) -> str:
    days = [p.at.date() for p in trend.points] + list(trend.dose_steps)
    first = min(days, default=date.today())
    last = max(days, default=first)
    last = max(last, first + timedelta(days=7))
    span = (last - first).days or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(trend.total_max, 1)

    def x(d: date | datetime) -> float:
        day = d.date() if isinstance(d, datetime) else d
        return LEFT + plot_w * (day - first).days / span

    def y(total: int) -> float:
        return TOP + plot_h * (1 - total / top)

    title = f"{trend.instrument.upper()} total over time"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t">',
        f'<title id="t">{escape(title)}, with dose steps marked</title>',
        '<rect width="100%" height="100%" fill="white"/>',
        _text(LEFT, 28, title, font_size="18", font_family="sans-serif"),
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
    ]
    for k in range(5):
        value = round(top * k / 4)
        out.append(_text(LEFT - 8, y(value) + 4, str(value), text_anchor="end", font_size="12"))
    for level, at in trend.thresholds:
        color = "#c62828" if level == "RED" else "#ef8f00"
        out.append(
            f'<line class="threshold" data-level="{level}" x1="{LEFT}" y1="{y(at):.1f}" '
            f'x2="{LEFT + plot_w}" y2="{y(at):.1f}" stroke="{color}" stroke-dasharray="2 4"/>'
        )
        out.append(
            _text(
                LEFT + plot_w - 4,
                y(at) - 4,
                f"{level} {at}",
                text_anchor="end",
                font_size="11",
                fill=color,
            )
        )
    for step in trend.dose_steps:
        out.append(
            f'<line class="dose-step" x1="{x(step):.1f}" y1="{TOP}" x2="{x(step):.1f}" '
            f'y2="{TOP + plot_h}" stroke="#1565c0" stroke-dasharray="6 4">'
            f"<title>dose step {step.isoformat()}</title></line>"
        )
    if trend.points:
        path = " ".join(f"{x(p.at):.1f},{y(p.total):.1f}" for p in trend.points)
        out.append(
            f'<polyline class="score" points="{path}" fill="none" stroke="black" stroke-width="2"/>'
        )
        for p in trend.points:
            color = {"RED": "#c62828", "AMBER": "#ef8f00"}.get(p.severity or "", "black")
            label = f"{p.at.date().isoformat()}: {p.total} ({p.band})"
            out.append(
                f'<circle cx="{x(p.at):.1f}" cy="{y(p.total):.1f}" r="4" fill="{color}">'
                f"<title>{escape(label)}</title></circle>"
            )
    else:
        out.append(
            _text(LEFT + plot_w / 2, TOP + plot_h / 2, "no reports yet", text_anchor="middle")
        )
    out.append(_text(LEFT, HEIGHT - 20, first.isoformat(), font_size="12"))
    out.append(
        _text(LEFT + plot_w, HEIGHT - 20, last.isoformat(), text_anchor="end", font_size="12")
    )
    out.append("</svg>")
    return "\n".join(out)
