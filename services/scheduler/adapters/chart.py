"""A taper plan as an accessible SVG step chart of the daily dose over time (pure strings).

The y axis is mg a day of the plan's drug, or mg diazepam-equivalent when the plan crosses over
to diazepam (two drugs cannot share one mg axis). Each planned step is one horizontal segment
(``class="step"``, ``data-step``) from its date to the next step's date (the last one runs one
more hold interval); ``class="riser"`` lines join them. Crossover stages and formulation-need
points have markers with their own ``<title>``. No patient information is drawn.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from services.scheduler.domain.planning import StepKind, TaperPlan

WIDTH, HEIGHT = 800, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 50, 70
_NICE = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _nice_step(top: Decimal, ticks: int = 5) -> Decimal:
    raw = top / ticks
    scale = Decimal(1)
    while raw >= 10 * scale:
        scale *= 10
    while raw < scale:
        scale /= 10
    return next(n * scale for n in _NICE if n * scale >= raw)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def _date_ticks(first: date, last: date) -> list[date]:
    span_months = (last.year - first.year) * 12 + last.month - first.month + 1
    every = next((k for k in (1, 2, 3, 6, 12, 24) if span_months / k <= 8), 48)
    ticks = []
    t = _add_months(date(first.year, first.month, 1), 0)
    while t <= last:
        if t >= first:
            ticks.append(t)
        t = _add_months(t, every)
    return ticks or [first]


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def plan_to_svg(plan: TaperPlan) -> str:
    drugs = {a.drug for s in plan.steps for a in s.administrations} | {plan.drug}
    use_eq = len(drugs) > 1
    unit = "mg diazepam-equivalent a day" if use_eq else f"mg {plan.drug} a day"

    def dose_of(step_index: int) -> Decimal:
        s = plan.steps[step_index]
        return s.diazepam_eq_mg if use_eq else s.daily_dose_mg

    baseline = sum((a.dose_mg for a in plan.baseline), Decimal(0))
    if use_eq:
        per_10mg = dict(plan.equivalence)
        baseline = sum(
            (a.dose_mg * 10 / per_10mg[a.drug] for a in plan.baseline), Decimal(0)
        ).quantize(Decimal("0.0001"))

    title = f"Taper plan: {plan.drug}, daily dose over time"
    if not plan.steps:
        desc = "The plan has no steps."
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t d">'
            f'<title id="t">{escape(title)}</title><desc id="d">{escape(desc)}</desc></svg>'
        )

    starts = [s.effective_on for s in plan.steps]
    tail_weeks = max(plan.pace.interval_weeks, 2)
    ends = [*starts[1:], starts[-1] + timedelta(weeks=tail_weeks)]
    first, last = starts[0], ends[-1]
    top = max([baseline, *(dose_of(i) for i in range(len(plan.steps)))])
    top = top if top > 0 else Decimal(1)
    y_step = _nice_step(top)
    y_max = y_step * ((top / y_step).to_integral_value(rounding="ROUND_CEILING"))

    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max((last - first).days, 1)

    def x(d: date) -> float:
        return LEFT + plot_w * (d - first).days / span

    def y(v: Decimal) -> float:
        return TOP + plot_h * (1 - float(v / y_max))

    out: list[str] = []
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t d" '
        f'font-family="sans-serif" font-size="12">'
    )
    final = dose_of(len(plan.steps) - 1)
    desc = (
        f"Step chart of {len(plan.steps)} planned steps from {first.isoformat()} to "
        f"{starts[-1].isoformat()}, from {_num(baseline)} to {_num(final)} {unit}."
    )
    if plan.formulation_needs:
        desc += " The plan stops where a product not on file is needed."
    out.append(f'<title id="t">{escape(title)}</title>')
    out.append(f'<desc id="d">{escape(desc)}</desc>')
    out.append(_text(WIDTH / 2, 24, title, text_anchor="middle", font_size="16"))

    # axes, grid and ticks
    out.append('<g class="axes" stroke="#444" fill="none">')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>')
    out.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>')
    out.append("</g>")
    out.append('<g class="y-ticks" fill="#222">')
    v = Decimal(0)
    while v <= y_max:
        yy = y(v)
        out.append(
            f'<line x1="{LEFT - 5}" y1="{yy:.1f}" x2="{LEFT + plot_w}" y2="{yy:.1f}" '
            f'stroke="#ddd"/>'
        )
        out.append(_text(LEFT - 8, yy + 4, _num(v), text_anchor="end"))
        v += y_step
    out.append("</g>")
    out.append('<g class="x-ticks" fill="#222">')
    for t in _date_ticks(first, last):
        xx = x(t)
        out.append(
            f'<line x1="{xx:.1f}" y1="{TOP + plot_h}" x2="{xx:.1f}" y2="{TOP + plot_h + 5}" '
            f'stroke="#444"/>'
        )
        out.append(_text(xx, TOP + plot_h + 20, t.isoformat(), text_anchor="middle"))
    out.append("</g>")
    out.append(_text(LEFT + plot_w / 2, HEIGHT - 15, "date", text_anchor="middle"))
    out.append(
        _text(
            18,
            TOP + plot_h / 2,
            unit,
            text_anchor="middle",
            transform=f"rotate(-90 18 {TOP + plot_h / 2:.1f})",
        )
    )

    # the step line
    out.append('<g class="plan" stroke="#1f5fa8" stroke-width="2.5" fill="none">')
    previous = baseline
    for i, step in enumerate(plan.steps):
        dose = dose_of(i)
        x1, x2, yy = x(starts[i]), x(ends[i]), y(dose)
        out.append(
            f'<line class="riser" x1="{x1:.1f}" y1="{y(previous):.1f}" x2="{x1:.1f}" '
            f'y2="{yy:.1f}" stroke-dasharray="3 2"/>'
        )
        label = f"Step {step.number} ({step.kind.value}) from {step.effective_on.isoformat()}: "
        label += f"{_num(dose)} {unit}"
        out.append(
            f'<line class="step" data-step="{step.number}" x1="{x1:.1f}" y1="{yy:.1f}" '
            f'x2="{x2:.1f}" y2="{yy:.1f}"><title>{escape(label)}</title></line>'
        )
        previous = dose
    out.append("</g>")

    # markers
    out.append('<g class="markers">')
    for i, step in enumerate(plan.steps):
        if step.kind is StepKind.CROSSOVER:
            cx, cy = x(starts[i]), y(dose_of(i))
            out.append(
                f'<rect class="crossover" x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" '
                f'height="10" fill="#e08a00" transform="rotate(45 {cx:.1f} {cy:.1f})">'
                f"<title>{escape(f'Crossover stage: step {step.number}')}</title></rect>"
            )
    by_number = {s.number: i for i, s in enumerate(plan.steps)}
    for need in plan.formulation_needs:
        i = by_number.get(need.after_step, 0)
        cx = x(ends[i]) if need.after_step else x(first)
        cy = y(dose_of(i))
        label = (
            f"Needs a {need.kind.value.replace('_', ' ')} of {need.drug} "
            f"(amounts of {_num(need.needed_unit_mg)} mg or less) to go below "
            f"{_num(need.at_dose_mg)} mg a day ({need.reason_code})"
        )
        out.append(
            f'<polygon class="formulation-need" points="{cx:.1f},{cy - 9:.1f} '
            f'{cx - 8:.1f},{cy + 6:.1f} {cx + 8:.1f},{cy + 6:.1f}" fill="#c62828">'
            f"<title>{escape(label)}</title></polygon>"
        )
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
