"""Reading request traces: CSV with ``time,key,size`` and optional ``cost`` and ``hit``."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .exceptions import TraceError

#: The longest line a trace may have, in characters: far above any real request (a key,
#: a size, a time and a cost), low enough that a file that is not a trace (no line breaks,
#: ``/dev/zero``) is refused after reading this much, not after filling the memory.
MAX_LINE = 64 * 1024

#: The columns every trace has, and the optional ones.
REQUIRED_COLUMNS = ("time", "key", "size")
OPTIONAL_COLUMNS = ("cost", "hit")


@dataclass
class Trace:
    """The requests of one trace (or of several files concatenated), column by column.

    Attributes:
        name: the file's path, or the paths joined by ``+`` for a concatenation.
        times: the ``time`` of each request (seconds, or a request index).
        keys: the key of each request.
        sizes: the size of each request in bytes.
        costs: the ``cost`` recorded on each request, None where empty or absent.
        first_cost: each key's first known cost (keys without one are missing).
        unique_bytes: the sum of each key's first size.
        weights: a weighted sample's keys (see :mod:`._sample`), each with the number of
            keys it stands for (``1/p``, kept with probability ``p``); empty for a trace
            read from files, whose requests count once each.
    """

    name: str
    times: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    costs: list[float | None] = field(default_factory=list)
    first_cost: dict[str, float] = field(default_factory=dict)
    unique_bytes: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    #: The size of the largest request, and the sums over all requests of the requests
    #: themselves, of the bytes and of each key's first known cost (the denominators of
    #: the miss ratios), each request counted with its key's weight in a weighted sample.
    largest: int = 0
    total_requests: float = 0.0
    total_bytes: float = 0
    total_cost: float = 0.0

    @property
    def requests(self) -> int:
        """The number of requests."""
        return len(self.keys)

    @property
    def has_costs(self) -> bool:
        """True if any request has a cost."""
        return bool(self.first_cost)

    def summarize(self) -> Trace:
        """Compute the sums from the columns (``first_cost`` is kept); return the trace."""
        first_size: dict[str, int] = {}
        for key, size in zip(self.keys, self.sizes, strict=True):
            first_size.setdefault(key, size)
        self.unique_bytes = sum(first_size.values())
        self.largest = max(self.sizes, default=0)
        first_cost = self.first_cost
        weights = self.weights
        if not weights:
            self.total_requests = len(self.keys)
            self.total_bytes = sum(self.sizes)
            self.total_cost = sum(first_cost.get(k, 0.0) for k in self.keys) if first_cost else 0.0
            return self
        self.total_requests = sum(weights[key] for key in self.keys)
        self.total_bytes = sum(weights[k] * s for k, s in zip(self.keys, self.sizes, strict=True))
        self.total_cost = sum(weights[k] * first_cost.get(k, 0.0) for k in self.keys)
        return self


def read_trace(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Trace:
    """Read one trace file, or several files as one trace in the order given.

    A request with an empty ``size`` (a writer that did not know it) takes the size of the
    same key's previous request, or of its next one when it has no previous one.

    Raises:
        TraceError: a file is unreadable or empty, lacks a required column, or has a
            bad value; the message names the file and the line.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    names = [os.fspath(path) for path in paths]
    if not names:
        raise TraceError("no trace file given")
    trace = Trace("+".join(names))
    unknown: list[tuple[int, str, int]] = []  # (request index, file, line) of empty sizes
    for name in names:
        _read_file(name, trace, unknown)
    _fill_sizes(trace, unknown)
    trace.summarize()
    return trace


def _read_file(name: str, trace: Trace, unknown: list[tuple[int, str, int]]) -> None:
    try:
        with open(name, newline="", encoding="utf-8") as stream:
            _parse(name, _lines(name, stream), trace, unknown)
    except UnicodeDecodeError as exc:
        raise TraceError(f"{name}: not a text file ({exc.reason})") from None
    except csv.Error as exc:
        raise TraceError(f"{name}: {exc}") from None
    except OSError as exc:
        raise TraceError(f"{name}: {exc.strerror or exc}") from None


def _lines(name: str, stream: TextIO) -> Iterator[str]:
    """The lines of ``stream``, each read with a bound: a longer one is an error."""
    number = 0
    readline = stream.readline
    while line := readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise TraceError(
                f"{name}:{number}: line longer than {MAX_LINE} characters (not a trace?)"
            )
        yield line


def _parse(
    name: str, stream: Iterator[str], trace: Trace, unknown: list[tuple[int, str, int]]
) -> None:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise TraceError(f"{name}:1: empty file (expected the header time,key,size)")
    columns = [c.strip().lower() for c in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise TraceError(
            f"{name}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the header must have time,key,size and may have cost,hit; got {','.join(header)})"
        )
    at = {c: columns.index(c) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in columns}
    t_at, k_at, s_at = at["time"], at["key"], at["size"]
    c_at, h_at = at.get("cost"), at.get("hit")
    width = len(columns)
    times, keys, sizes, costs = trace.times, trace.keys, trace.sizes, trace.costs
    first_cost = trace.first_cost
    start = len(keys)
    for row in reader:
        line = reader.line_num
        if len(row) != width:
            if not row or row == [""]:
                continue  # a blank line
            raise TraceError(f"{name}:{line}: expected {width} fields, got {len(row)}")
        key = row[k_at]
        if not key:
            raise TraceError(f"{name}:{line}: empty key")
        times.append(_number(name, line, "time", row[t_at]))
        raw_size = row[s_at].strip()
        if raw_size:
            sizes.append(_size(name, line, raw_size))
        else:
            unknown.append((len(sizes), name, line))
            sizes.append(-1)
        keys.append(key)
        cost: float | None = None
        if c_at is not None and row[c_at].strip():
            cost = _number(name, line, "cost", row[c_at])
            if cost < 0:
                raise TraceError(f"{name}:{line}: cost must not be negative: {row[c_at]!r}")
            first_cost.setdefault(key, cost)
        costs.append(cost)
        if h_at is not None and row[h_at].strip() not in ("", "0", "1"):
            raise TraceError(f"{name}:{line}: hit must be 0, 1 or empty: {row[h_at]!r}")
    if len(keys) == start:
        raise TraceError(f"{name}: no requests after the header")


def _number(name: str, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{name}:{line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"{name}:{line}: {column} is not a finite number: {text!r}")
    return value


def _size(name: str, line: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TraceError(f"{name}:{line}: size is not a whole number of bytes: {text!r}") from None
    if value < 0:
        raise TraceError(f"{name}:{line}: size must not be negative: {text!r}")
    return value


def _fill_sizes(trace: Trace, unknown: list[tuple[int, str, int]]) -> None:
    if not unknown:
        return
    sizes, keys = trace.sizes, trace.keys
    last: dict[str, int] = {}
    for i, key in enumerate(keys):
        if sizes[i] >= 0:
            last[key] = sizes[i]
        elif key in last:
            sizes[i] = last[key]
    following: dict[str, int] = {}
    for i in range(len(keys) - 1, -1, -1):
        if sizes[i] >= 0:
            following[keys[i]] = sizes[i]
        elif keys[i] in following:
            sizes[i] = following[keys[i]]
    for i, name, line in unknown:
        if sizes[i] < 0:
            raise TraceError(f"{name}:{line}: empty size, and key {keys[i]!r} has no known size")
