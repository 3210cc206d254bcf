"""The entrypoint kit: what every endpoint on one patient's data does around its use case.

Authenticate, authorize the access to the patient (audited, allowed or denied), take the
Idempotency-Key, open the unit of work, commit it after the use case, answer. An endpoint says
once, in its signature, what it does to whose data (Netflix Dispatch's ``Annotated`` style)::

    TaperUpdate = Annotated[
        PatientAccess,
        Depends(patient_access("update", "taper", roles=(Role.CLINICIAN,), commit=True,
                               idempotent=True)),
    ]

    async def hold(patient_id: uuid.UUID, body: In, access: TaperUpdate, idem: Idempotent) -> Out:
        async with access as uow:  # authorized and audited (denied: 403, audited); key claimed
            out = Out.of(await use_case(Command(patient_id, access.principal.subject), uow))
            await idem.record(uow, out)
        return out  # committed before the answer is built

Why ``async with`` and not a dependency that ``yield``s the unit of work and commits after it:
FastAPI runs a yield dependency's exit code after the response is sent (its ``scope="request"``
default; tests/unit/chassis/test_entrypoint_kit.py shows it), and the answer must never be sent
before its commit succeeded. The ``async with`` commits on leaving the block, before the endpoint
returns. An endpoint cannot skip the check and still get a unit of work from the kit: the only
way to it is entering, which authorizes first.

The dependency resolves nothing but the request (the principal is FastAPI's cached
``CurrentPrincipal``, the key the cached ``Idempotent``, the unit of work from the runtime on
``app.state``): its parameters are the endpoint's own, so the OpenAPI documents do not change.
Declare the ``Annotated`` alias at module level: with ``from __future__ import annotations``
FastAPI resolves an annotation in the module's globals, and a local alias would silently become a
query parameter.

``access.refusing(DomainError, to_field_refusal)`` answers a domain refusal raised in the block as
the chassis' ``FieldRefusal`` (a 422 naming the field, http.py), after rolling back.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from fastapi import Request

from services.chassis.auth import CurrentPrincipal, Principal, Role, authorize_patient_access
from services.chassis.errors import FieldRefusal
from services.chassis.idempotency import Idempotent, IdempotentRequest
from services.chassis.uow import UnitOfWork

E = TypeVar("E", bound=Exception)

PATIENT_OR_CLINICIAN = (Role.PATIENT, Role.CLINICIAN)
CLINICIAN = (Role.CLINICIAN,)


@dataclass(frozen=True)
class Access:
    """What an endpoint does to a patient's data, as the audit log records it."""

    action: str  # read | create | update ...
    resource: str  # taper, plan, episode ...
    roles: tuple[Role, ...] = PATIENT_OR_CLINICIAN
    commit: bool = False  # commit the unit of work on leaving the block (a write)
    idempotent: bool = False  # claim the Idempotency-Key after authorizing (a replay answers)
    # A clinician holding this scope is granted any patient (a clinical administrator).
    admin_scope: str | None = None


class PatientAccess:
    """One request's access to one patient's data; ``async with`` it for the unit of work.

    Entering opens the unit of work, authorizes and audits (the audit row is committed at once,
    allowed or denied: ``authorize_patient_access``), then claims the Idempotency-Key when the
    access is idempotent. Leaving without an error commits when the access is a write; any
    error rolls everything back (the audit row stays).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        access: Access,
        principal: Principal,
        patient_id: uuid.UUID,
        request: Request | None = None,
        idem: IdempotentRequest | None = None,
    ) -> None:
        self.access = access
        self.principal = principal
        self.patient_id = patient_id
        self._uow = uow
        self._request = request
        self._idem = idem
        self._refusals: list[tuple[type[Exception], Callable[[Any], FieldRefusal]]] = []

    def refusing(self, kind: type[E], refusal: Callable[[E], FieldRefusal]) -> PatientAccess:
        """Answer the domain's ``kind`` of refusal, raised in the block, as ``refusal(exc)``: a
        422 naming the field (http.py). Everything is rolled back first, as for any error."""
        self._refusals.append((kind, refusal))
        return self

    async def authorize(self) -> None:
        """Authorize and audit only, for an endpoint that reads nothing in this transaction
        (e.g. a stream that holds no connection while it waits)."""
        async with self:
            pass

    async def __aenter__(self) -> UnitOfWork:
        uow = await self._uow.__aenter__()
        try:
            await authorize_patient_access(
                uow,
                self.principal,
                self.patient_id,
                action=self.access.action,
                resource=self.access.resource,
                request=self._request,
                roles=self.access.roles,
                granted=self.access.admin_scope is not None
                and self.principal.has_scope(self.access.admin_scope),
            )
            if self.access.idempotent and self._idem is not None:
                await self._idem.claim(uow)
        except BaseException as exc:
            await self._uow.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return uow

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None and self.access.commit:
                await self._uow.commit()
        finally:
            await self._uow.__aexit__(exc_type, exc, tb)
        for kind, refusal in self._refusals:
            if isinstance(exc, kind):
                raise refusal(exc) from None


UowFactory = Callable[[], UnitOfWork]


def _uow_factory(request: Request) -> UowFactory:
    # The service's runtime puts itself on the app (chassis/runtime.py: ServiceRuntime.app).
    factory: UowFactory = request.app.state.runtime.uow
    return factory


def patient_access(
    action: str,
    resource: str,
    *,
    roles: tuple[Role, ...] = PATIENT_OR_CLINICIAN,
    commit: bool = False,
    idempotent: bool = False,
    admin_scope: str | None = None,
) -> Callable[..., Awaitable[PatientAccess]]:
    """The dependency giving an endpoint on ``/patients/{patient_id}/...`` its ``PatientAccess``.

    ``idempotent``: the endpoint declares ``idem: Idempotent`` too (to record its answer); the
    key is claimed on entering, after the access is authorized.
    """
    access = Access(action, resource, roles, commit, idempotent, admin_scope)

    if idempotent:

        async def idempotent_access(
            patient_id: uuid.UUID, principal: CurrentPrincipal, request: Request, idem: Idempotent
        ) -> PatientAccess:
            uow = _uow_factory(request)()
            return PatientAccess(uow, access, principal, patient_id, request, idem)

        return idempotent_access

    async def plain_access(
        patient_id: uuid.UUID, principal: CurrentPrincipal, request: Request
    ) -> PatientAccess:
        return PatientAccess(_uow_factory(request)(), access, principal, patient_id, request)

    return plain_access
