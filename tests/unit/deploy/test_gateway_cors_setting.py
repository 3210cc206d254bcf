"""The gateway's CORS allow-list setting: only ``scheme://host[:port]`` origins reach the nginx
config (they are written into it), none by default."""

from __future__ import annotations

import pytest

from deploy.localstack.gateway import LocalGateway, cors_origins_conf


def test_no_origins_no_cors_config() -> None:
    assert cors_origins_conf(()) == ("", "")
    assert LocalGateway().cors_origins == ()


def test_listed_origins_become_map_entries_and_vary() -> None:
    entries, vary = cors_origins_conf(["https://app.example.org", "http://localhost:5173"])
    assert entries == (
        '"https://app.example.org" $http_origin; "http://localhost:5173" $http_origin;'
    )
    assert vary == "add_header Vary Origin always;"


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "null",
        "https://app.example.org/",
        "https://app.example.org/path",
        "HTTPS://APP.EXAMPLE.ORG",
        "ftp://app.example.org",
        'https://a"; } server { listen 1',
        "https://a.example.org https://b.example.org",
    ],
)
def test_anything_but_an_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        LocalGateway(cors_origins=[origin])


def test_one_string_is_not_a_list() -> None:
    with pytest.raises(ValueError, match="list"):
        LocalGateway(cors_origins="https://app.example.org")  # type: ignore[arg-type]
