"""The recording sinks of ``make run-cluster`` count every request a provider would receive:
duplicates included, bodies that do not parse included, on disk before the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from deploy.localstack import pager_sink


@pytest.fixture
def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(pager_sink, "record_dir", tmp_path)
    yield tmp_path


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_page_is_recorded_twice_when_sent_twice(recording: Path) -> None:
    page = {"routing_key": "k", "dedup_key": "d-1", "payload": {"summary": "s"}}
    with TestClient(pager_sink.app) as client:
        assert client.post("/pages", json=page).status_code == 202
        assert client.post("/pages", json=page).status_code == 202
        assert client.post("/pages", content=b"not json").status_code == 202
    lines = _lines(recording / "webhook.jsonl")
    assert [line.get("dedup_key") for line in lines] == ["d-1", "d-1", None]
    assert lines[2]["unparsed"] == "not json"
    assert all("received_at" in line for line in lines)


def test_sms_are_recorded_with_their_idempotency_token(recording: Path) -> None:
    with TestClient(pager_sink.app) as client:
        response = client.post(
            "/sms/2010-04-01/Accounts/AC1/Messages.json",
            content=b"To=%2B15550100001&Body=hello",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "I-Twilio-Idempotency-Token": "tok-1",
            },
        )
        assert response.status_code == 201
    (line,) = _lines(recording / "sms.jsonl")
    assert line["To"] == "+15550100001"
    assert line["idempotency_token"] == "tok-1"


def test_nothing_is_written_without_a_record_dir(tmp_path: Path) -> None:
    assert pager_sink.record_dir is None
    with TestClient(pager_sink.app) as client:
        client.post("/pages", json={"dedup_key": "x"})
    assert list(tmp_path.iterdir()) == []


def test_the_sms_sink_lists_what_it_received_like_twilio() -> None:
    """The notifications service searches this list for an SMS left in doubt by a crash; without
    it every in-doubt SMS in the proving grounds was sent again."""
    with TestClient(pager_sink.app) as client:
        path = "/sms/2010-04-01/Accounts/AC1/Messages.json"
        sent = client.post(path, data={"To": "+15550001111", "From": "+1", "Body": "hi Ref ab"})
        client.post(path, data={"To": "+15550002222", "From": "+1", "Body": "other"})
        listing = client.get(path, params={"To": "+15550001111", "PageSize": "100"}).json()
    assert [m["sid"] for m in listing["messages"]] == [sent.json()["sid"]]
    assert listing["messages"][0]["body"] == "hi Ref ab"
    assert listing["next_page_uri"] is None


def test_exported_spans_are_appended_one_batch_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_file = tmp_path / "spans" / "zipkin.jsonl"
    spans_file.parent.mkdir()
    monkeypatch.setattr(pager_sink, "spans_file", spans_file)
    batch = [{"traceId": "a" * 32, "id": "b" * 16, "name": "post /reports"}]
    with TestClient(pager_sink.app) as client:
        assert client.post("/api/v2/spans", json=batch).status_code == 202
        assert client.post("/api/v2/spans", json=batch).status_code == 202
    assert _lines(spans_file) == [batch, batch]  # type: ignore[comparison-overlap]
