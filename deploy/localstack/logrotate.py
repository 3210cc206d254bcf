"""Size-rotated log files for the processes ``make run`` starts (10 MB x 5 by default).

A child writes to a pipe; a daemon thread copies what it writes into ``<name>.log`` and, when the
file would pass ``max_bytes``, shifts ``<name>.log.1`` .. ``.<backups>`` along (the oldest is
dropped), as ``logging.handlers.RotatingFileHandler`` does. The child never holds the file, so
rotation needs no signal and no copy-truncate, and a long-running stack keeps at most
``(backups + 1) x max_bytes`` per process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


class RotatingLog:
    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError("max_bytes and backups must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file.tell() and self._file.tell() + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")

    def pump(self, stream: IO[bytes]) -> threading.Thread:
        """Copy ``stream`` (a child's stdout) line by line until it closes, in a daemon thread."""

        def run() -> None:
            try:
                for line in iter(stream.readline, b""):
                    self.write(line)
            finally:
                stream.close()
                self.close()

        thread = threading.Thread(target=run, name=f"log:{self.path.name}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            self._file.close()
