"""A one-line progress bar for a terminal, redrawn in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from .._sizes import format_size


class ProgressBar:
    """Shows bytes freed out of bytes to free, and models removed, on one terminal line.

    Thread-safe: the library may report evictions from its manager thread.

    Args:
        stream: the terminal to draw on (stderr, so stdout stays clean for output).
        width: characters of the bar itself.
        interval: seconds between two redraws; the last state is always drawn by
            :meth:`finish`.
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        width: int = 30,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._width = width
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._count = 0
        self._drawn_at: float | None = None
        self._line_length = 0

    def begin(self, total: int) -> None:
        """Set the number of bytes to free (the larger of two calls wins) and draw."""
        with self._lock:
            self._total = max(self._total, total)
            self._draw(force=True)

    def advance(self, size: int) -> None:
        """Count one more model removed, of ``size`` bytes, and redraw if it is time."""
        with self._lock:
            self._done += size
            self._count += 1
            self._draw(force=False)

    def finish(self) -> None:
        """Draw the final state and end the line (nothing if nothing was drawn)."""
        with self._lock:
            if self._drawn_at is None:
                return
            self._draw(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._drawn_at = None

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        fraction = min(1.0, self._done / self._total) if self._total > 0 else 1.0
        filled = round(fraction * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        models = "model" if self._count == 1 else "models"
        line = (
            f"evicting [{bar}] {fraction:4.0%}  {self._count} {models} removed, "
            f"{format_size(self._done)} freed ({format_size(self._total)} needed)"
        )
        # Pad over the previous line: it may have been longer.
        self._stream.write("\r" + line.ljust(self._line_length))
        self._stream.flush()
        self._line_length = len(line)


class CountBar:
    """Shows steps done out of steps, the time taken and the time left, on one terminal line.

    Args:
        stream: the terminal to draw on (stderr, so stdout stays clean for output).
        label: what is counted (``"replaying day.csv"``).
        width: characters of the bar itself.
        interval: seconds between two redraws; the last state is drawn by :meth:`finish`.
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        width: int = 30,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._width = width
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._line_length = 0
        self._state = ("", 0, 0)

    def update(self, label: str, done: int, total: int) -> None:
        """Record ``done`` of ``total`` steps of ``label``, and redraw if it is time."""
        changed = label != self._state[0]
        if changed and self._state[0]:
            self._started = self._clock()  # the next trace: its own clock
        self._state = (label, done, total)
        self._draw(force=changed or done >= total)

    def finish(self) -> None:
        """End the line (nothing if nothing was drawn)."""
        if self._drawn_at is None:
            return
        self._draw(force=True)
        self._stream.write("\n")
        self._stream.flush()
        self._drawn_at = None

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        label, done, total = self._state
        fraction = min(1.0, done / total) if total > 0 else 1.0
        filled = round(fraction * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        spent = now - self._started
        left = f", about {spent / done * (total - done):.0f} s left" if 0 < done < total else ""
        line = f"{label} [{bar}] {done}/{total} ({spent:.0f} s{left})"
        self._stream.write("\r" + line.ljust(self._line_length))
        self._stream.flush()
        self._line_length = len(line)
