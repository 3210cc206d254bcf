"""Reference data are cacheable (issue 18 part 8): a strong ETag of the body, Cache-Control,
and 304 without a body when If-None-Match holds the current tag (RFC 9110 §13.1.2)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from services.chassis.reference_data import CACHE_CONTROL, cached_reference


class Codes(BaseModel):
    codes: list[str]


CURRENT = Codes(codes=["a", "b"])


def app() -> FastAPI:
    api = FastAPI()

    @api.get("/codes")
    async def codes(request: Request) -> Response:
        return cached_reference(request, CURRENT)

    return api


async def get(headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/codes", headers=headers)


async def test_the_body_comes_with_its_etag_and_cache_control() -> None:
    r = await get()
    assert r.status_code == 200 and r.json() == {"codes": ["a", "b"]}
    assert r.headers["cache-control"] == CACHE_CONTROL
    assert r.headers["etag"].startswith('"') and r.headers["etag"] == (await get()).headers["etag"]


@pytest.mark.parametrize("form", ["{tag}", "W/{tag}", '"other", {tag}', "*"])
async def test_a_current_etag_is_answered_304_without_a_body(form: str) -> None:
    tag = (await get()).headers["etag"]
    r = await get({"If-None-Match": form.format(tag=tag)})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == tag


async def test_a_stale_etag_gets_the_new_body(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = (await get()).headers["etag"]
    monkeypatch.setattr(f"{__name__}.CURRENT", Codes(codes=["a", "b", "c"]))  # a deploy
    r = await get({"If-None-Match": tag})
    assert r.status_code == 200 and r.json()["codes"] == ["a", "b", "c"]
    assert r.headers["etag"] != tag
