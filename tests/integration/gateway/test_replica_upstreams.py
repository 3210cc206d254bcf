"""Two replicas behind one upstream (``make run-cluster``): nginx passes a request that failed on
one replica to the other only when it is safe. A GET is retried; a POST that reached a replica
is never re-sent (a symptom report or a dose change must not be applied twice blindly)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from deploy.localstack.gateway import LocalGateway
from tests.plugins.infra import serving


class _Upstream:
    """A raw TCP upstream recording each request line; ``answer=False`` reads the request and
    hangs up without a response (a replica dying while it handles the request)."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.seen: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    continue
                self.seen.append(data.split(b"\r\n", 1)[0].decode())
                if self.answer:
                    body = b'{"ok":true}'
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                    )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def replicas() -> Iterator[tuple[_Upstream, _Upstream]]:
    dying, healthy = _Upstream(answer=False), _Upstream(answer=True)
    yield dying, healthy
    dying.close()
    healthy.close()


def _gateway(replicas: tuple[_Upstream, _Upstream]) -> LocalGateway:
    # The dying replica first: a fresh nginx's round robin picks it for the first request.
    return LocalGateway(upstreams={"monitoring": [replicas[0].port, replicas[1].port]})


def test_a_get_that_failed_on_one_replica_is_answered_by_the_other(
    replicas: tuple[_Upstream, _Upstream],
) -> None:
    dying, healthy = replicas
    for gateway in serving(_gateway(replicas)):
        response = httpx.get(f"{gateway.url}/api/monitoring/health", timeout=30)
        assert response.status_code == 200
        assert dying.seen == ["GET /api/monitoring/health HTTP/1.1"]  # tried there first
        assert healthy.seen == ["GET /api/monitoring/health HTTP/1.1"]


def test_a_post_that_reached_a_replica_is_never_sent_to_the_other(
    replicas: tuple[_Upstream, _Upstream],
) -> None:
    dying, healthy = replicas
    for gateway in serving(_gateway(replicas)):
        response = httpx.post(
            f"{gateway.url}/api/monitoring/patients/p/symptom-reports", json={}, timeout=30
        )
        assert response.status_code == 502
        assert dying.seen == ["POST /api/monitoring/patients/p/symptom-reports HTTP/1.1"]
        assert healthy.seen == []  # not replayed


def test_a_post_that_could_not_connect_goes_to_the_other_replica() -> None:
    healthy = _Upstream(answer=True)
    nobody = socket.create_server(("127.0.0.1", 0))
    closed_port = nobody.getsockname()[1]
    nobody.close()  # connection refused: the request never reached anyone
    try:
        gateway = LocalGateway(upstreams={"monitoring": [closed_port, healthy.port]})
        for running in serving(gateway):
            response = httpx.post(f"{running.url}/api/monitoring/x", json={}, timeout=30)
            assert response.status_code == 200
            assert healthy.seen == ["POST /api/monitoring/x HTTP/1.1"]
    finally:
        healthy.close()
