"""Size-rotated log files for the processes ``make run`` starts (10 MB x 5 by default).

A child writes to a pipe; a daemon thread copies what it writes into ``<name>.log`` and, when the
file would pass ``max_bytes``, shifts ``<name>.log.1`` .. ``.<backups>`` along (the oldest is
dropped), as ``logging.handlers.RotatingFileHandler`` does. The child never holds the file, so
rotation needs no signal and no copy-truncate, and a long-running stack keeps at most
``(backups + 1) x max_bytes`` per process. nginx writes its own files: ``rotate_if_large`` shifts
them and the stack tells nginx to reopen (SIGUSR1). Kafka's log4j rolls its own (10 MB x 5).
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
        shift(self.path, self.backups)
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


def shift(path: Path, backups: int = BACKUPS) -> None:
    """``path`` becomes ``path.1``, ``.1`` becomes ``.2`` … (``.<backups>`` is lost)."""
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def rotate_if_large(path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> bool:
    """For a file another process writes (nginx's logs): shift it when past ``max_bytes``; True
    then, and the writer must reopen its file (nginx: SIGUSR1)."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    shift(path, backups)
    return True
