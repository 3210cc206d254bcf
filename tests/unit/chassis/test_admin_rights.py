"""Who administers a service: ops, or a clinician holding its admin scope — never a patient, even
one whose token (from a misconfigured identity provider) carries the scope."""

from __future__ import annotations

import uuid

import pytest
from fastapi import HTTPException

from services.chassis.auth import Principal, Role, require_admin

SCOPE = "notifications:admin"


@pytest.mark.parametrize(
    ("principal", "admin"),
    [
        (Principal("ops-1", Role.OPS), True),
        (Principal("c-1", Role.CLINICIAN, scopes=frozenset({SCOPE})), True),
        (Principal("c-2", Role.CLINICIAN), False),
        (Principal("c-3", Role.CLINICIAN, scopes=frozenset({"group_matching:admin"})), False),
        (Principal("p-1", Role.PATIENT, patient_id=uuid.uuid4(), scopes=frozenset({SCOPE})), False),
    ],
    ids=["ops", "clinician-with-scope", "clinician", "other-scope", "patient-with-scope"],
)
def test_administrators(principal: Principal, admin: bool) -> None:
    if admin:
        require_admin(principal, SCOPE)
    else:
        with pytest.raises(HTTPException) as refused:
            require_admin(principal, SCOPE)
        assert refused.value.status_code == 403
