"""Signed, expiring acknowledge links put in pages.

A link acknowledges one escalation for the one clinician it was sent to, and nothing else: a
JWT (HS256) with its own secret and audience, so it can never pass as an API bearer token, and an
expiry. The token carries opaque ids only (it ends up in mail logs and SMS provider records).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

AUDIENCE = "taper-page-ack"


class InvalidLink(Exception):
    """Tampered, expired or for another purpose: the page must be acknowledged in the console."""


@dataclass(frozen=True)
class AckClaim:
    escalation_id: uuid.UUID
    clinician: str


class AckLinks:
    def __init__(self, secret: str, base_url: str, ttl: timedelta) -> None:
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl

    def token(self, claim: AckClaim, now: datetime) -> str:
        return jwt.encode(
            {
                "aud": AUDIENCE,
                "sub": claim.clinician,
                "esc": str(claim.escalation_id),
                "iat": now,
                "exp": now + self._ttl,
            },
            self._secret,
            algorithm="HS256",
        )

    def url(self, claim: AckClaim, now: datetime) -> str:
        return f"{self._base_url}/{self.token(claim, now)}"

    def verify(self, token: str, now: datetime) -> AckClaim:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["exp", "iat", "sub", "aud"], "verify_exp": False},
            )
            # Expiry against the service clock (the same clock that signed it), not the host's.
            if int(claims["exp"]) <= int(now.timestamp()):
                raise InvalidLink("link expired")
            return AckClaim(uuid.UUID(claims["esc"]), str(claims["sub"]))
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise InvalidLink("invalid link") from exc
