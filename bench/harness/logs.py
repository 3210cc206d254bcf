"""The services' logging during a benchmark: formatted as in production, written nowhere."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from services.chassis.logs import configure_logging


@contextlib.contextmanager
def service_logging(service: str, level: str) -> Iterator[str]:
    """``service``'s JSON logging at ``level``, written to /dev/null; warnings also to stderr.

    Production runs at INFO, where FastStream logs two lines per consumed message: keeping the
    formatting cost in the measurement, not the terminal.
    """
    configure_logging(service, level)
    root = logging.getLogger()
    with open(os.devnull, "w") as devnull:
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(devnull)
        warnings = logging.StreamHandler(sys.stderr)
        warnings.setLevel(logging.WARNING)
        root.addHandler(warnings)
        # FastStream's own "faststream" logger does not propagate to the root: its per-message
        # "Received"/"Processed" lines go to its own stderr handler, muted here the same way.
        muted = [
            (h, h.setStream(devnull))
            for h in logging.getLogger("faststream").handlers
            if isinstance(h, logging.StreamHandler)
        ]
        try:
            yield (
                f"the service's JSON logging (`configure_logging`) at {level}, and FastStream's "
                "own stderr handler, both written to /dev/null"
            )
        finally:
            for h, stream in muted:
                h.setStream(stream)
            root.handlers[:] = []
