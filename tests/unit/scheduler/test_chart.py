"""The plan as an SVG step chart: well-formed, accessible, one segment per step."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from itertools import pairwise
from typing import Any

from services.scheduler.adapters.chart import plan_to_svg
from services.scheduler.domain.planning import PlanningInput, StepKind, plan

D = Decimal
NS = {"s": "http://www.w3.org/2000/svg"}


def patient(**kw: Any) -> PlanningInput:
    base: dict[str, Any] = dict(
        drug="diazepam",
        administrations_mg=(D(5), D(5)),
        duration_weeks=30,
        age=40,
        start_on=date(2026, 1, 5),
        formulations=("diazepam_tab_2mg", "diazepam_tab_5mg", "diazepam_sol_1mg_ml"),
    )
    base.update(kw)
    return PlanningInput(**base)


def steps_of(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter("{http://www.w3.org/2000/svg}line") if e.get("class") == "step"]


def test_reduction_plan_is_well_formed_accessible_and_non_increasing() -> None:
    p = plan(patient())
    root = ET.fromstring(plan_to_svg(p))
    assert root.get("role") == "img"
    title = root.find("s:title", NS)
    assert title is not None and title.text and "diazepam" in title.text
    assert root.find("s:desc", NS) is not None
    segments = steps_of(root)
    assert [int(e.get("data-step", "0")) for e in segments] == [s.number for s in p.steps]
    ys = [float(e.get("y1", "nan")) for e in segments]
    assert all(a <= b for a, b in pairwise(ys))  # SVG y grows downwards: the dose never rises
    for e in segments:
        assert e.get("y1") == e.get("y2")
        assert float(e.get("x1", "0")) < float(e.get("x2", "0"))
    # axes: date and mg ticks
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    date_labels = [t for t in texts if t[:2] == "20" and len(t) == 10]
    assert len(date_labels) >= 3 and all(date.fromisoformat(t).day == 1 for t in date_labels)
    assert "0" in texts


def test_markers_for_crossover_and_formulation_need() -> None:
    p = plan(
        patient(
            drug="alprazolam",
            administrations_mg=(D("0.5"), D(1)),
            formulations=("alprazolam_tab_0_5mg", "diazepam_tab_2mg", "diazepam_tab_5mg"),
            crossover_wanted=True,
        )
    )
    assert p.formulation_needs
    root = ET.fromstring(plan_to_svg(p))
    classes = [e.get("class") for e in root.iter()]
    assert classes.count("crossover") == sum(s.kind is StepKind.CROSSOVER for s in p.steps)
    assert classes.count("formulation-need") == len(p.formulation_needs)
    assert len(steps_of(root)) == len(p.steps)
    assert "diazepam-equivalent" in ET.tostring(root, encoding="unicode")
