"""Bearer tokens from an identity provider (RS256/ES256 keys from its JWKS) and the attacks on
them: alg none, algorithm confusion, unknown or missing key ids, keys of the wrong type, another
signer reusing a kid, wrong issuer or audience, expiry and not-before, a subject that is not an
opaque id; the development HS256 issuer is refused in production."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import HTTPException
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.chassis.auth import Role, TokenVerifier, issue_dev_token
from services.chassis.settings import ServiceSettings

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER, AUDIENCE = "https://idp.example", "taper-api"


def jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(public)), "kid": kid, "alg": alg, "use": "sig"}


JWKS = json.dumps(
    {
        "keys": [
            jwk(RSA_KEY.public_key(), "rsa-1", "RS256"),
            jwk(EC_KEY.public_key(), "ec-1", "ES256"),
        ]
    }
)


PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "jwt_secret": "p" * 40,
    "database_url": "postgresql+asyncpg://svc@db.example/svc",
    "kafka_replication_factor": 3,
}


def settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "svc",
        "environment": "test",
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_jwks": JWKS,
    }
    return ServiceSettings(**(values | overrides))


def claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "sub": "dr-ada",
        "role": "clinician",
        "panel": [str(uuid.uuid4())],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
    }
    return base | overrides


def token(key: Any, alg: str, kid: str | None, **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def refused(verifier: TokenVerifier, raw: str) -> bool:
    with pytest.raises(HTTPException) as caught:
        verifier.verify(raw)
    return caught.value.status_code == 401


def test_provider_tokens_signed_with_rs256_and_es256_are_accepted() -> None:
    verifier = TokenVerifier(settings())
    for key, alg, kid in ((RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")):
        principal = verifier.verify(token(key, alg, kid))
        assert principal.subject == "dr-ada" and principal.role is Role.CLINICIAN


def test_alg_none_and_other_algorithms_are_refused() -> None:
    verifier = TokenVerifier(settings())
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert refused(verifier, unsigned)
    assert refused(verifier, token("k" * 48, "HS384", None))
    assert refused(verifier, token(RSA_KEY, "PS256", "rsa-1"))


def test_algorithm_confusion_with_the_providers_public_key_is_refused() -> None:
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT itself refuses to HMAC with a PEM; forge the token by hand, as an attacker would.
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(claims(iat=0, nbf=0, exp=4102444800)).encode())
    signature = b64(hmac.new(pem, header + b"." + body, hashlib.sha256).digest())
    forged = (header + b"." + body + b"." + signature).decode()
    assert refused(TokenVerifier(settings()), forged)
    assert refused(TokenVerifier(settings(**PRODUCTION)), forged)


def test_unknown_or_missing_key_ids_wrong_key_types_and_other_signers_are_refused() -> None:
    verifier = TokenVerifier(settings())
    assert refused(verifier, token(RSA_KEY, "RS256", "rsa-2"))  # unknown kid
    assert refused(verifier, token(RSA_KEY, "RS256", None))  # no kid
    assert refused(verifier, token(EC_KEY, "ES256", "rsa-1"))  # kid of an RSA key, alg ES256
    assert refused(verifier, token(OTHER_RSA, "RS256", "rsa-1"))  # another signer, same kid


def test_issuer_audience_expiry_and_not_before_are_checked() -> None:
    verifier = TokenVerifier(settings())
    now = datetime.now(UTC)
    for bad in (
        {"iss": "https://evil.example"},
        {"aud": "another-api"},
        {"exp": now - timedelta(seconds=31)},  # beyond the 30 s clock-skew leeway
        {"nbf": now + timedelta(minutes=10)},
    ):
        assert refused(verifier, token(RSA_KEY, "RS256", "rsa-1", **bad))
    # within the leeway: the provider's clock may be a few seconds off ours
    for skewed in ({"exp": now - timedelta(seconds=5)}, {"nbf": now + timedelta(seconds=5)}):
        assert verifier.verify(token(RSA_KEY, "RS256", "rsa-1", **skewed)).subject == "dr-ada"
    strict = TokenVerifier(settings(jwt_leeway_s=0))
    assert refused(strict, token(RSA_KEY, "RS256", "rsa-1", exp=now - timedelta(seconds=1)))


def test_a_subject_that_is_not_an_opaque_id_is_refused_without_being_echoed() -> None:
    # The subject goes into events and the audit log: an e-mail address or a name would be PHI,
    # and an event could not carry it (contracts.types.Subject).
    verifier = TokenVerifier(settings())
    for subject in ("jane.doe@example.org", "Dr Jane Doe", "auth0|Jane", "x" * 65, ""):
        with pytest.raises(HTTPException) as caught:
            verifier.verify(token(RSA_KEY, "RS256", "rsa-1", sub=subject))
        assert caught.value.status_code == 401
        assert subject not in str(caught.value.detail) or not subject
    for subject in (str(uuid.uuid4()), "00u1a2b3c4", "idp:4711"):
        assert verifier.verify(token(RSA_KEY, "RS256", "rsa-1", sub=subject)).subject == subject


def test_the_development_issuer_works_outside_production_only() -> None:
    dev = settings()
    assert TokenVerifier(dev).verify(issue_dev_token(dev, subject="ops-1", role=Role.OPS))
    prod = settings(**PRODUCTION)
    hs256 = jwt.encode(claims(), "p" * 40, algorithm="HS256")  # even with the real secret
    assert refused(TokenVerifier(prod), hs256)
    assert TokenVerifier(prod).verify(token(RSA_KEY, "RS256", "rsa-1")).subject == "dr-ada"


@pytest.fixture
def jwks_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = JWKS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    server.shutdown()


def test_keys_are_fetched_from_the_providers_jwks_url(jwks_url: str) -> None:
    verifier = TokenVerifier(settings(jwt_jwks=None, jwt_jwks_url=jwks_url))
    assert verifier.verify(token(EC_KEY, "ES256", "ec-1")).subject == "dr-ada"
    assert refused(verifier, token(EC_KEY, "ES256", "ec-9"))


def test_production_needs_the_providers_keys() -> None:
    with pytest.raises(ValueError, match="JWKS"):
        ServiceSettings(service_name="svc", environment="production", jwt_secret="p" * 40)
