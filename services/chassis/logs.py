"""JSON logs with trace ids. Log opaque ids only: never names, contact details or free text."""

from __future__ import annotations

import logging
import sys
import traceback

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter


class _TraceContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.service = self._service
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        return True


class RedactExceptionsFilter(logging.Filter):
    """Keeps an exception's type and frames, drops its message, from every record we write.

    Third-party exception messages carry request data: SQLAlchemy's the statement's parameters,
    pydantic's the input, asyncpg's the offending value. A logger we do not control (uvicorn's
    "Exception in ASGI application", a library's ``log.exception``) would write them through
    ``exc_info``; this handler writes ``error_type`` and ``frames`` instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.error_type = getattr(record, "error_type", type(exc).__name__)
            record.frames = getattr(record, "frames", traceback.format_tb(exc.__traceback__)[-5:])
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(trace_id)s %(span_id)s",
            rename_fields={"levelname": "level", "asctime": "time"},
        )
    )
    handler.addFilter(_TraceContextFilter(service))
    handler.addFilter(RedactExceptionsFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_payload_loggers()


def quiet_payload_loggers() -> None:
    """Third-party loggers that write request paths or message payloads (PHI) at DEBUG/INFO are
    held at WARNING whatever the root level: aiokafka logs every record's value at DEBUG.
    Called by every ``ServiceRuntime`` too, so in-process runs (tests, benchmarks) are as safe."""
    # Access logs carry full paths; the gateway logs requests without query strings instead.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("aiokafka", "kafka", "httpcore", "httpx"):
        logging.getLogger(name).setLevel("WARNING")
