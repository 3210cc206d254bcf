"""Bearer-token authentication, roles and the per-patient ownership rule, with audit.

Tokens are JWTs checked for signature, issuer, audience, expiry and not-before. Roles:
``patient`` (may reach only their own records: claim ``patient_id``), ``clinician`` (only patients
on their panel: claim ``panel``, a list of patient ids), ``ops`` (no clinical content). Every
decision about patient data, allowed or denied, is written to the append-only ``audit_log``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.types import SUBJECT_PATTERN
from services.chassis.settings import ServiceSettings
from services.chassis.telemetry import valid_request_id
from services.chassis.uow import UnitOfWork

# The identity provider's algorithms and the key type each needs.
ASYMMETRIC = {"RS256": "RSA", "ES256": "EC"}
DEV_ALGORITHM = "HS256"  # the development issuer (local stack and tests), never in production


class Role(StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    OPS = "ops"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    patient_id: uuid.UUID | None = None
    panel: frozenset[uuid.UUID] = field(default_factory=frozenset)
    # OAuth 2.0 ``scope`` claim (RFC 8693 §4.2, space-separated): administrative rights that
    # cut across patients, e.g. ``notifications:admin`` for clinical administrators.
    scopes: frozenset[str] = field(default_factory=frozenset)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_access_patient(self, patient_id: uuid.UUID) -> bool:
        if self.role is Role.PATIENT:
            return self.patient_id == patient_id
        if self.role is Role.CLINICIAN:
            return patient_id in self.panel
        return False  # ops see no clinical content


class InvalidToken(Exception):
    """Refused before any claim is read: wrong algorithm, unknown key, key of the wrong type."""


class TokenVerifier:
    """Verifies bearer tokens: the identity provider's (RS256/ES256, keys from its JWKS by
    ``kid``) and, outside production, the development issuer's (HS256, shared secret).

    The algorithm comes from the token header but only ever selects among these: ``none``,
    any other algorithm, HS256 in production, an unknown ``kid`` and a key whose type does not
    match the algorithm are refused. HS256 is verified with the development secret only, never
    with a provider key, so a token HMAC-signed with the provider's public key (algorithm
    confusion) fails.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = timedelta(seconds=settings.jwt_leeway_s)
        self._dev_issuer = settings.environment != "production"
        self._jwks_client = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
            if settings.jwt_jwks_url
            else None
        )
        self._jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks) if settings.jwt_jwks else None

    def _key_for(self, token: str) -> tuple[Any, str]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg in ASYMMETRIC:
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise InvalidToken("no key id")
            jwk = self._provider_key(kid)
            if jwk.key_type != ASYMMETRIC[alg] or (jwk.algorithm_name not in (alg, None)):
                raise InvalidToken("key does not match the algorithm")
            return jwk.key, alg
        if alg == DEV_ALGORITHM and self._dev_issuer:
            return self._secret, DEV_ALGORITHM
        raise InvalidToken("algorithm not accepted")

    def _provider_key(self, kid: str) -> jwt.PyJWK:
        if self._jwks is not None:
            for key in self._jwks.keys:
                if key.key_id == kid:
                    return key
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key(kid)  # refetches once for a new kid
        raise InvalidToken("unknown key id")

    def verify(self, token: str) -> Principal:
        try:
            key, alg = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
            role = Role(claims["role"])
            patient_id = uuid.UUID(claims["patient_id"]) if claims.get("patient_id") else None
            panel = frozenset(uuid.UUID(p) for p in claims.get("panel", []))
            scopes = frozenset(str(claims.get("scope", "")).split())
        except (InvalidToken, jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid or expired token",
                headers={"WWW-Authenticate": "Bearer"},
            ) from exc
        if not re.fullmatch(SUBJECT_PATTERN, str(claims["sub"])):
            # The subject goes into events and the audit log: an e-mail address or a name there
            # would be PHI. The identity provider must issue opaque ids (README: Identity). The
            # subject itself is not echoed back.
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="token subject is not an opaque id (lower-case letters, digits, _.:-)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role is Role.PATIENT and patient_id is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail="patient token lacks patient_id"
            )
        return Principal(
            subject=str(claims["sub"]),
            role=role,
            patient_id=patient_id,
            panel=panel,
            scopes=scopes,
        )


def issue_dev_token(
    settings: ServiceSettings,
    *,
    subject: str,
    role: Role | str,
    patient_id: uuid.UUID | None = None,
    panel: list[uuid.UUID] | None = None,
    scopes: list[str] | None = None,
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> str:
    """Sign a token with the development secret (local stack and tests; refused in production)."""
    if settings.environment == "production":
        raise RuntimeError("the development token issuer is disabled in production")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "role": str(Role(role)),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
    }
    if patient_id:
        claims["patient_id"] = str(patient_id)
    if panel:
        claims["panel"] = [str(p) for p in panel]
    if scopes:
        claims["scope"] = " ".join(scopes)
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


_bearer = HTTPBearer(auto_error=False)


def authenticated(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if creds is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify(creds.credentials)


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="role not permitted")


def require_admin(principal: Principal, scope: str) -> None:
    """A service's administrators: ops, or a clinician holding the service's admin ``scope``.

    A patient is never one, whatever scopes a misconfigured identity provider put in the token.
    """
    if principal.role is Role.OPS or (
        principal.role is Role.CLINICIAN and principal.has_scope(scope)
    ):
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail="administrators only")


async def authorize_patient_access(
    uow: UnitOfWork,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    action: str,
    resource: str,
    request: Request | None = None,
    roles: tuple[Role, ...] = (Role.PATIENT, Role.CLINICIAN),
    granted: bool = False,
) -> None:
    """Allow or refuse ``principal`` on ``patient_id``'s data, and audit the decision either way.

    ``granted``: the caller established another right to this patient's data for this request
    (e.g. the on-call clinician paged for the patient's escalation); the role must still fit.

    The audit row is committed at once, allowed or denied: the access stands in the log even when
    the request is then refused, fails or is retried (its own transaction would need another
    session; here the caller's unit of work is committed with only the audit row in it, so call
    this before the request changes anything).
    """
    allowed = principal.role in roles and (granted or principal.may_access_patient(patient_id))
    await uow.audit(
        actor=principal.subject,
        actor_role=str(principal.role),
        action=action,
        resource=resource,
        patient_id=patient_id,
        outcome="allowed" if allowed else "denied",
        request_id=valid_request_id(request.headers.get("x-request-id")) if request else None,
        client_addr=request.client.host if request and request.client else None,
    )
    await uow.commit()
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not permitted for this patient")
