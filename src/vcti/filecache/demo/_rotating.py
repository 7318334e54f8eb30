"""A text file that rotates itself at a size, for the demo's spans and events."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class RotatingFile:
    """A file-like writer of whole records that keeps ``path`` under ``max_bytes``.

    Before a record that would take the file past ``max_bytes``, ``path`` is renamed to
    ``path.1`` (the previous ``path.1`` is replaced), and a new ``path`` is started: at most
    about twice ``max_bytes`` is on disk, and each file holds whole records. A record larger
    than ``max_bytes`` is written alone in a file of its own. The OpenTelemetry console
    exporter and structlog's ``WriteLogger`` write one record per ``write()`` call, which is
    all this relies on. Thread-safe.

    Args:
        path: the file to write; appended to if it exists.
        max_bytes: the size at which the file is rotated (positive).
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file = self.path.open("ab")
        self._size = self._file.tell()

    def write(self, text: str) -> int:
        """Write one record, rotating first if it would not fit."""
        data = text.encode()
        with self._lock:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._size += len(data)
        return len(text)

    def flush(self) -> None:
        """Flush the current file."""
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        """Close the current file; closing twice is harmless."""
        with self._lock:
            self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("ab")
        self._size = 0
