"""The nginx gateway's optional TLS listener and its rate-limit / body-size knobs, on a real nginx
(two starts for the module) in front of the echo upstream of test_launchers.py. The certificates
come from a throwaway CA made here with ``cryptography``."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.localstack.gateway import (
    LocalGateway,
    TlsFiles,
    find_nginx,
    max_body_text,
    nginx_build_info,
    supports_http2_directive,
)
from tests.integration.infra.test_launchers import _get, _Upstream
from tests.plugins.infra import serving
from tests.support.pki import GatewayPki, make_gateway_pki

#: the TLS 1.2 suites of tls-server.conf.template (Mozilla intermediate)
MOZILLA_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=63072000"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> GatewayPki:
    return make_gateway_pki(tmp_path_factory.mktemp("pki"))


# ------------------------------------------------------------------------------------------
# one echo upstream, two gateways (module scope: two nginx starts in all)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[_Upstream]:
    server = _Upstream("scheduler")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tls_gateway(upstream: _Upstream, pki: GatewayPki) -> Iterator[LocalGateway]:
    """TLS on, with the limits a fuzzer would use (10000 r/s, bursts of 10000) and 2 MiB bodies."""
    yield from serving(
        LocalGateway(
            upstreams={"scheduler": upstream.port},
            tls=TlsFiles(pki.chain, pki.key),
            rate_per_second=10000,
            burst=10000,
            max_body="2m",
        )
    )


@pytest.fixture(scope="module")
def strict_gateway(upstream: _Upstream) -> Iterator[LocalGateway]:
    """No TLS; 1 request/s per client and no burst."""
    yield from serving(
        LocalGateway(upstreams={"scheduler": upstream.port}, rate_per_second=1, burst=0)
    )


def _trusting(pki: GatewayPki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


def _https(
    gw: LocalGateway,
    path: str,
    context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """``_get`` of test_launchers.py, over the gateway's TLS listener."""
    req = urllib.request.Request(f"{gw.tls_url}{path}", headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _handshake(gw: LocalGateway, context: ssl.SSLContext) -> tuple[str | None, str]:
    """TLS handshake only: (protocol version, cipher name)."""
    assert gw.tls_port is not None
    with (
        socket.create_connection(("127.0.0.1", gw.tls_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def _security_headers(headers: dict[str, str]) -> dict[str, str | None]:
    return {name: headers.get(name) for name in SECURITY_HEADERS}


# ------------------------------------------------------------------------------------------
# TLS listener
# ------------------------------------------------------------------------------------------


def test_tls_listener_proxies_as_https_with_hsts(
    tls_gateway: LocalGateway, upstream: _Upstream, pki: GatewayPki
) -> None:
    ctx = _trusting(pki)
    before = len(upstream.requests)
    status, headers, body = _https(tls_gateway, "/api/scheduler/health?x=1", ctx)
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/api/scheduler/health?x=1"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    rid = seen["headers"].get("x-request-id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", rid), f"generated X-Request-ID expected, got {rid!r}"
    assert headers.get("X-Request-ID") == rid
    assert headers.get("Strict-Transport-Security") == HSTS
    assert _security_headers(headers) == SECURITY_HEADERS
    assert len(upstream.requests) - before == 1

    # a sane client request id passes through TLS too
    _, _, body = _https(tls_gateway, "/api/scheduler/x", ctx, headers={"X-Request-ID": "tls-req-7"})
    assert json.loads(body)["headers"]["x-request-id"] == "tls-req-7"

    # the gateway's own answers on the TLS listener: JSON, security headers and HSTS
    for path, expected in (("/api/unknown/x", 404), ("/api/monitoring/health", 502)):
        status, headers, body = _https(tls_gateway, path, ctx)
        assert status == expected and "detail" in json.loads(body)
        assert headers.get("Strict-Transport-Security") == HSTS
        assert _security_headers(headers) == SECURITY_HEADERS

    # the plain listener of the same gateway: same headers, no HSTS, X-Forwarded-Proto http
    status, headers, body = _get(f"{tls_gateway.url}/api/scheduler/health")
    assert status == 200
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "http"
    assert "Strict-Transport-Security" not in headers
    assert _security_headers(headers) == SECURITY_HEADERS


def test_tls_listener_has_the_body_limit_knob_and_its_message(
    tls_gateway: LocalGateway, pki: GatewayPki
) -> None:
    ctx = _trusting(pki)
    status, _, body = _https(
        tls_gateway, "/api/scheduler/x", ctx, data=b"x" * (3 * 1024 * 1024 // 2)
    )
    assert status == 200 and json.loads(body)["body_len"] == 3 * 1024 * 1024 // 2
    status, headers, body = _https(
        tls_gateway, "/api/scheduler/x", ctx, data=b"x" * (2 * 1024 * 1024 + 1)
    )
    assert status == 413
    assert json.loads(body) == {"detail": "request body too large (2 MiB at most)"}
    assert headers.get("Strict-Transport-Security") == HSTS


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_listener_speaks_only_tls_1_2_and_1_3_with_modern_ciphers(
    tls_gateway: LocalGateway, pki: GatewayPki
) -> None:
    only_12 = _trusting(pki)
    only_12.minimum_version = only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = _handshake(tls_gateway, only_12)
    assert version == "TLSv1.2" and cipher in MOZILLA_TLS12

    only_13 = _trusting(pki)
    only_13.minimum_version = ssl.TLSVersion.TLSv1_3
    assert _handshake(tls_gateway, only_13)[0] == "TLSv1.3"

    # a TLS 1.2 client offering only suites outside the list (CBC, no AEAD) gets no handshake
    cbc_only = _trusting(pki)
    cbc_only.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc_only.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        _handshake(tls_gateway, cbc_only)

    # TLS 1.1 and lower: refused by the server. OpenSSL 3 only offers them at security level 0,
    # so the client lowers it; the failure must be the server's protocol_version alert, not a
    # client that could not offer the protocol at all.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cafile=str(pki.ca_cert))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(tls_gateway, old)
    if refused.value.reason == "NO_PROTOCOLS_AVAILABLE":
        # this OpenSSL cannot offer TLS <= 1.1 at all: nothing to ask the server; the 1.2 / 1.3
        # handshakes above are then the whole check
        return
    assert refused.value.reason in {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"}, (
        refused.value
    )


def test_tls_client_without_the_ca_fails_verification(tls_gateway: LocalGateway) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_gateway, ssl.create_default_context())  # system CAs only
    with pytest.raises(urllib.error.URLError) as err:
        _https(tls_gateway, "/api/scheduler/health", ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


# ------------------------------------------------------------------------------------------
# rate-limit knobs
# ------------------------------------------------------------------------------------------


def _burst(url: str, n: int = 30) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(max_workers=10) as pool:
        return [(status, body) for status, _, body in pool.map(lambda _: _get(url), range(n))]


def test_rate_limit_knobs_decide_when_429_starts(
    strict_gateway: LocalGateway, tls_gateway: LocalGateway, upstream: _Upstream
) -> None:
    """The same burst of 30 requests: refused in part at 1 request/s without burst, never at the
    fuzzer's 10000/s with bursts of 10000."""
    before = len(upstream.requests)
    strict = _burst(f"{strict_gateway.url}/api/scheduler/health")
    statuses = [status for status, _ in strict]
    assert statuses.count(429) > 0 and set(statuses) <= {200, 429}, statuses
    assert json.loads(next(b for s, b in strict if s == 429)) == {
        "detail": "too many requests, slow down"
    }
    assert len(upstream.requests) - before == statuses.count(200), "429s never reach the service"

    relaxed = [status for status, _ in _burst(f"{tls_gateway.url}/api/scheduler/health")]
    assert relaxed == [200] * len(relaxed)


# ------------------------------------------------------------------------------------------
# rendering and validation, without starting nginx
# ------------------------------------------------------------------------------------------


def _directives(path: Path) -> str:
    """A rendered file without its comment lines."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.lstrip().startswith("#"))


def test_defaults_render_as_before_and_without_tls(tmp_path: Path) -> None:
    gw = LocalGateway(8080, {"scheduler": 8001}, tmp_path)
    conf = _directives(gw.render())
    body = _directives(gw.server_body_path)
    assert "rate=20r/s;" in conf and "client_max_body_size 1m;" in conf
    assert "limit_req zone=per_client burst=40 nodelay;" in body
    assert "limit_conn conn_per_client 50;" in body
    assert "(1 MiB at most)" in body
    assert f"include {gw.server_body_path};" in conf
    assert "ssl" not in conf + body and "Strict-Transport-Security" not in body
    assert not gw.tls_server_path.exists() and gw.tls_url is None
    assert "${" not in conf + body


def test_tls_renders_a_second_server_sharing_the_body(tmp_path: Path, pki: GatewayPki) -> None:
    gw = LocalGateway(
        8080, {}, tmp_path, tls=TlsFiles(pki.chain, pki.key), tls_port=8443, max_body="512k"
    )
    conf = _directives(gw.render())
    tls = _directives(gw.tls_server_path)
    assert f"include {gw.tls_server_path};" in conf
    assert "listen 127.0.0.1:8443 ssl;" in tls
    assert f"include {gw.server_body_path};" in tls
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in tls and "ssl_session_tickets off;" in tls
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in tls
    assert "(512 KiB at most)" in gw.server_body_path.read_text()
    assert "${" not in conf + tls
    assert ("http2 on;" in tls) == supports_http2_directive(nginx_build_info(find_nginx()))
    assert gw.tls_url == "https://127.0.0.1:8443"

    # the same run dir without TLS: the TLS server is gone
    plain = LocalGateway(8080, {}, tmp_path)
    assert "tls-server.conf" not in _directives(plain.render())
    assert not plain.tls_server_path.exists()


def test_http2_only_where_nginx_has_the_directive() -> None:
    v2 = " configure arguments: --with-http_ssl_module --with-http_v2_module"
    assert supports_http2_directive("nginx version: nginx/1.25.1\n" + v2)
    assert supports_http2_directive("nginx version: nginx/1.27.4\n" + v2)
    assert not supports_http2_directive("nginx version: nginx/1.22.1\n" + v2)
    assert not supports_http2_directive("nginx version: nginx/1.26.0\n configure arguments: ")


def test_knob_validation() -> None:
    assert max_body_text("1m") == "1 MiB"
    assert max_body_text("512K") == "512 KiB"
    assert max_body_text("2g") == "2 GiB"
    assert max_body_text("100") == "100 bytes"
    for bad in ("0", "1 m", "1mb", "-1", "", "1t"):
        with pytest.raises(ValueError):
            max_body_text(bad)
    for kwargs in (
        {"rate_per_second": 0},
        {"burst": -1},
        {"conn_per_client": 0},
        {"max_body": "1x"},
        {"tls_port": 8443},  # without tls=
    ):
        with pytest.raises(ValueError):
            LocalGateway(8080, **kwargs)
