"""A one-line progress bar for a terminal, redrawn in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from .._sizes import format_size


class _Line:
    """A line redrawn in place on a terminal, at most once per ``interval`` seconds.

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
        self._drawn_at: float | None = None
        self._line_length = 0

    def _end(self) -> None:
        """Draw the final state and end the line (nothing if nothing was drawn)."""
        if self._drawn_at is None:
            return
        self._draw(force=True)
        self._stream.write("\n")
        self._stream.flush()
        self._drawn_at = None

    def _due(self, force: bool) -> float | None:
        """The time now if a redraw is due (or ``force``d), else None."""
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self._interval:
            return None
        self._drawn_at = now
        return now

    def _bar(self, fraction: float) -> str:
        filled = round(fraction * self._width)
        return "#" * filled + "-" * (self._width - filled)

    def _write(self, line: str) -> None:
        # Pad over the previous line: it may have been longer.
        self._stream.write("\r" + line.ljust(self._line_length))
        self._stream.flush()
        self._line_length = len(line)

    def _draw(self, force: bool) -> None:
        raise NotImplementedError


class ProgressBar(_Line):
    """Shows bytes freed out of bytes to free, and models removed, on one terminal line.

    Thread-safe: the library may report evictions from its manager thread. Takes the
    arguments of a terminal line: ``stream``, ``width``, ``interval``, ``clock``.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        width: int = 30,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream, width=width, interval=interval, clock=clock)
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._count = 0

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
            self._end()

    def _draw(self, force: bool) -> None:
        if self._due(force) is None:
            return
        fraction = min(1.0, self._done / self._total) if self._total > 0 else 1.0
        models = "model" if self._count == 1 else "models"
        self._write(
            f"evicting [{self._bar(fraction)}] {fraction:4.0%}  {self._count} {models} removed, "
            f"{format_size(self._done)} freed ({format_size(self._total)} needed)"
        )


class CountBar(_Line):
    """Shows steps done out of steps, the time taken and the time left, on one terminal line.

    Takes the arguments of a terminal line: ``stream``, ``width``, ``interval``, ``clock``.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        width: int = 30,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream, width=width, interval=interval, clock=clock)
        self._started = clock()
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
        self._end()

    def _draw(self, force: bool) -> None:
        now = self._due(force)
        if now is None:
            return
        label, done, total = self._state
        fraction = min(1.0, done / total) if total > 0 else 1.0
        spent = now - self._started
        left = f", about {spent / done * (total - done):.0f} s left" if 0 < done < total else ""
        self._write(f"{label} [{self._bar(fraction)}] {done}/{total} ({spent:.0f} s{left})")
