"""Log scanning: duplicate skips count only for the run's events; the synthetic PHI marker is
found in any log file (nginx's included), in any letter case, but not in the provider sinks."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.proving.collect import _normalise, count_spans, scan_logs


def test_scan_counts_the_runs_skips_and_finds_the_marker(tmp_path: Path) -> None:
    skip = {"message": "duplicate event skipped", "event_id": "e-1"}
    other = {"message": "duplicate event skipped", "event_id": "e-other-run"}
    (tmp_path / "monitoring-1.log").write_text(
        "\n".join([json.dumps(skip), json.dumps(other), "Traceback ...", json.dumps(skip)])
    )
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "access.log").write_text("GET /x?note=synthphi-note-ab12 200\n")
    (tmp_path / "sinks.log").write_text('{"to": "synthphi-mail@example.org"}\n')
    (tmp_path / "spans").mkdir()
    span = {"name": "POST /reports", "tags": {"note": "SYNTHPHI-x"}}
    (tmp_path / "spans" / "zipkin.jsonl").write_text(json.dumps([span, span]) + "\n[]\n")
    skipped, hits = scan_logs(tmp_path, {"e-1"})
    assert skipped == 2
    assert hits == ["gateway/access.log:1", "spans/zipkin.jsonl:1"]
    assert count_spans(tmp_path) == 2


def test_provider_requests_are_reduced_to_what_the_provider_dedupes_on() -> None:
    page = {"dedup_key": "k", "payload": {"custom_details": {
        "episode_id": "e", "patient_id": "p", "level": 2, "cycle": 0, "loop": 1}},
        "received_at": "2026-12-04T10:00:00+00:00"}  # fmt: skip
    out = _normalise("webhook", page)
    assert (out["dedup_key"], out["episode_id"], out["level"], out["cycle_loop"]) == (
        "k", "e", 2, "0/1",
    )  # fmt: skip
    assert _normalise("sms", {"To": "+1", "idempotency_token": "t"})["idempotency_token"] == "t"
    assert _normalise("mail", {"message_id": "<m@x>"})["message_id"] == "<m@x>"
