"""``Idempotency-Key`` on the state-changing POSTs (IETF draft-ietf-httpapi-idempotency-key-header).

A client that did not see the answer to a POST (a timeout, a dropped connection, the gateway
trying the other replica) sends it again with the same key and gets the first answer back,
replayed with ``Idempotency-Replayed: true``: nothing is done twice.

* The header is optional; a key is 1 to 255 printable ASCII characters (else 422 naming it).
* A key is scoped by the caller (token subject) and the operation: two callers, or two
  operations, never see each other's answers.
* The same key with another request (path parameters, query or body differ: a SHA-256 of their
  canonical JSON) is refused, 422 naming ``Idempotency-Key``: a new request is never mistaken
  for a retry of an old one.
* The key row is inserted when the request starts, in the transaction of the state change, and
  the answer is written to it just before that transaction commits: the effect and its key
  commit together or not at all (a crash in between leaves neither). A refused or failed request
  rolls its key back with everything else, so a retry runs again (nothing was done).
* Two requests with one key at once: the second's insert waits on the unique key for the first
  transaction (PostgreSQL), then ``ON CONFLICT DO NOTHING`` leaves it nothing to insert, and it
  replays the committed answer; it never runs the operation, never answers 500.
* Keys are kept 24 real hours (``settings.retention_idempotency_hours``), then pruned by the
  retention job (chassis/retention.py).

Pure operations (the plan previews) are exempt: repeating them changes nothing.

An endpoint declares ``idem: Idempotent``, calls ``await idem.claim(uow)`` after authorizing
(a replay is answered from there) and ``await idem.record(uow, out, status_code)`` before its
commit. On one patient's data the entrypoint kit (chassis/entrypoint.py, ``idempotent=True``)
claims the key on entering, after authorizing; the endpoint records its answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.dialects import postgresql, sqlite

from services.chassis.auth import CurrentPrincipal
from services.chassis.db import is_postgres
from services.chassis.uow import UnitOfWork

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
TABLE = "idempotency_keys"
MAX_KEY = 255
# Headers of the first answer worth replaying (a replay's body names the same resource version).
_REPLAYED_HEADERS = ("etag", "location")

KEY_DESCRIPTION = (
    "Makes a retry safe: the same key with the same request within 24 h replays the first "
    "answer (same status and body, header Idempotency-Replayed: true) and does nothing again; "
    "the same key with another request is refused (422). Scoped to the caller and the "
    "operation; 1 to 255 printable ASCII characters (a UUID is a good key)."
)


class Replay(Exception):
    """The stored answer to an earlier request with this key: the app answers it as it is."""

    def __init__(self, status_code: int, body: Any, headers: dict[str, str]) -> None:
        super().__init__("idempotent replay")
        self.status_code = status_code
        self.body = body
        self.headers = headers

    def response(self) -> Response:
        headers = {**self.headers, REPLAYED: "true"}
        if self.body is None:  # a 204
            return Response(status_code=self.status_code, headers=headers)
        return JSONResponse(self.body, status_code=self.status_code, headers=headers)


def _refused(msg: str, kind: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["header", HEADER], "msg": msg, "type": kind}],
    )


def valid_key(key: str | None) -> str | None:
    """The key, or 422 naming the header: empty, too long or not printable ASCII."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY or not all(" " <= c <= "~" for c in key):
        raise _refused(f"1 to {MAX_KEY} printable ASCII characters", "value_error")
    return key


def fingerprint(path_params: dict[str, Any], query: list[tuple[str, str]], body: bytes) -> str:
    """SHA-256 of the request as canonical JSON: equal JSON bodies match whatever their layout."""
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = body.hex()  # not JSON (refused by validation anyway): the bytes themselves
    canonical = json.dumps(
        {"path": path_params, "query": sorted(query), "body": parsed},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class IdempotentRequest:
    """One request's key (None: sent without one, nothing to do) and what identifies it."""

    key: str | None
    subject: str
    operation: str
    fingerprint: str

    def _where(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(
            table.c.subject == self.subject,
            table.c.operation == self.operation,
            table.c.key == self.key,
        )

    async def claim(self, uow: UnitOfWork) -> None:
        """Take the key for this request, or answer from its earlier use: raises ``Replay`` (the
        audit rows written so far are committed first) or a 422 for another request."""
        if self.key is None:
            return
        table = uow.table(TABLE)
        insert = postgresql.insert if is_postgres(uow.session.bind) else sqlite.insert
        claimed = await uow.session.scalar(
            insert(table)
            .values(
                subject=self.subject,
                operation=self.operation,
                key=self.key,
                fingerprint=self.fingerprint,
                created_at=uow.clock.now(),
            )
            # A key in use by a transaction not yet committed: PostgreSQL waits for it here.
            .on_conflict_do_nothing(index_elements=["subject", "operation", "key"])
            .returning(table.c.key)
        )
        if claimed is not None:
            return
        row = (await uow.session.execute(sa.select(table).where(self._where(table)))).mappings()
        earlier = row.first()
        if earlier is None:  # pruned between the two statements: take it again
            return await self.claim(uow)
        if earlier["fingerprint"] != self.fingerprint:
            raise _refused("already used with a different request", "idempotency_key_reused")
        if earlier["status_code"] is None:  # cannot be committed so; defensive
            raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{HEADER} is in use")
        await uow.commit()  # the audit rows of this request stay
        raise Replay(earlier["status_code"], earlier["body"], dict(earlier["headers"] or {}))

    async def record(
        self,
        uow: UnitOfWork,
        body: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Store the answer with the key, in the transaction about to commit the change."""
        if self.key is None:
            return
        kept = {k: v for k, v in (headers or {}).items() if k.lower() in _REPLAYED_HEADERS}
        table = uow.table(TABLE)
        await uow.session.execute(
            sa.update(table)
            .where(self._where(table))
            .values(
                status_code=status_code,
                body=None if body is None else jsonable_encoder(body),
                headers=kept,
            )
        )


async def idempotent_request(
    request: Request,
    principal: CurrentPrincipal,
    # Not ``key``: a dependency's parameters share the route's namespace ({key} is a path one).
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=KEY_DESCRIPTION,
            min_length=1,
            max_length=MAX_KEY,
            pattern=r"^[\x20-\x7e]+$",
            examples=["6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"],
        ),
    ] = None,
) -> IdempotentRequest:
    route = request.scope.get("route")
    operation = (
        route.operation_id or f"{request.method} {route.path}"
        if isinstance(route, APIRoute)
        else f"{request.method} {request.url.path}"
    )
    return IdempotentRequest(
        key=valid_key(idempotency_key),
        subject=principal.subject,
        operation=operation,
        fingerprint=fingerprint(
            dict(request.path_params),
            list(request.query_params.multi_items()),
            await request.body(),
        ),
    )


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]
