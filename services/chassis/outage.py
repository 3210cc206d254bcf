"""Telling an outage of our infrastructure from a fault of the message or request being handled.

A database that is restarting, unreachable or out of connections, or a broker that refuses a dead
letter, says nothing about the event: retrying it later will succeed. Such a failure must never
dead-letter the event (a dead letter is a page nobody receives until someone replays it), so the
consumer hands it back to Kafka and backs off until the infrastructure is back.

What counts (checked on the error, its ``orig`` and its ``__cause__`` chain — not ``__context__``:
an error a handler raises *while* handling an outage it chose to absorb is the handler's own):

* ``OSError`` (connection refused or reset, ``TimeoutError``);
* asyncpg's connection-level errors: ``PostgresConnectionError`` (SQLSTATE class 08, including
  ``ConnectionDoesNotExistError``), ``CannotConnectNowError`` (57P03, "the database system is
  starting up"), ``AdminShutdownError``/``CrashShutdownError`` (57P01/57P02),
  ``TooManyConnectionsError`` (53300), and its client-side ``InterfaceError``;
* SQLAlchemy's ``OperationalError``, ``InterfaceError``, ``DisconnectionError``, the pool's
  ``TimeoutError``, and any ``DBAPIError`` whose connection was invalidated. SQLAlchemy wraps an
  asyncpg error it has no name for in a plain ``DBAPIError`` (``orig`` is the asyncpg error): a
  connect during crash recovery raises exactly that, which is why ``orig`` is inspected too.

Not counted: a query cancelled by ``statement_timeout`` or a constraint violation — those can be
the message's own doing, and retrying them forever would stall its partition.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

try:  # asyncpg is the PostgreSQL driver; a SQLite-only install may lack it.
    import asyncpg.exceptions as _pg

    _ASYNCPG_OUTAGES: tuple[type[BaseException], ...] = (
        _pg.PostgresConnectionError,
        _pg.CannotConnectNowError,
        _pg.AdminShutdownError,
        _pg.CrashShutdownError,
        _pg.TooManyConnectionsError,
        _pg.InterfaceError,
    )
except ImportError:  # pragma: no cover - asyncpg is a declared dependency
    _ASYNCPG_OUTAGES = ()

_SQLALCHEMY_OUTAGES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # no connection from the pool in time
)

# How far down orig/__cause__ to look: the chains we see are 2-4 long.
_MAX_DEPTH = 8


class InfrastructureUnavailable(Exception):
    """The message could not be handled because infrastructure is down: redeliver it later.

    Its text is fixed (no third-party message): it is logged and may reach a span.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(f"infrastructure unavailable ({cause})")
        self.cause = cause


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it came from) is an outage of the database or network."""
    seen: set[int] = set()
    pending: list[tuple[BaseException, int]] = [(exc, 0)]
    while pending:
        current, depth = pending.pop()
        if id(current) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(current))
        if _is_outage_itself(current):
            return True
        for nxt in (getattr(current, "orig", None), current.__cause__):
            if isinstance(nxt, BaseException):
                pending.append((nxt, depth + 1))
    return False


def _is_outage_itself(exc: BaseException) -> bool:
    if isinstance(exc, OSError | InfrastructureUnavailable):
        return True
    if isinstance(exc, _ASYNCPG_OUTAGES) or isinstance(exc, _SQLALCHEMY_OUTAGES):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
