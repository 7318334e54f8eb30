"""Human-readable byte sizes: ``parse_size("1.5G")`` and ``format_size(1610612736)``.

Units follow GNU coreutils (``du``, ``df``, ``truncate -s``, ``sort -h``), so a size means
here what it means in the shell next to it. Units are case-insensitive::

    (none), B               bytes
    K, M, G, T, P           powers of 1024 (the same as KiB, MiB, GiB, TiB, PiB)
    KiB, MiB, GiB, TiB, PiB powers of 1024
    KB, MB, GB, TB, PB      powers of 1000

A fraction is allowed with any unit larger than a byte (``1.5G``) and rounded down to a
whole byte. Output always uses the unambiguous binary units (``1.5 GiB``), and every
formatted size parses back. (``repr(FileCache)`` and ``LoggingObserver`` keep 1.0's
``GB`` and ``MB`` for powers of 1024: 1.0's users and log searches read them.)
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["SIZE_UNITS_HELP", "format_size", "parse_size"]

_KI = 1024
_K = 1000


def _units() -> dict[str, int]:
    units = {"": 1, "b": 1}
    for power, letter in enumerate("kmgtp", start=1):
        units[letter] = units[f"{letter}ib"] = _KI**power
        units[f"{letter}b"] = _K**power
    return units


_UNITS = _units()  # lower-case unit -> bytes

_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-z]*)", re.ASCII)

_FORMAT_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")

#: One line for ``--help`` texts.
SIZE_UNITS_HELP = (
    "SIZE is a byte count or a number with a unit, case-insensitive: K, M, G, T, P and "
    "KiB, MiB, GiB, TiB, PiB are powers of 1024; KB, MB, GB, TB, PB are powers of 1000 "
    "(as in du and df); fractions like 1.5G are allowed. Sizes are printed in binary "
    "units (KiB, MiB, GiB)"
)


def parse_size(text: str) -> int:
    """Return the number of bytes that ``text`` (``"50G"``, ``"1.5 GiB"``, ``"300MB"``) means.

    Args:
        text: a non-negative number followed by an optional unit (see the module docstring).

    Returns:
        The size in bytes, rounded down to a whole byte.

    Raises:
        ValueError: ``text`` is empty, negative, malformed, has an unknown unit, or is a
            fraction of a byte.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty size")
    if stripped.startswith("-"):
        raise ValueError(f"size must not be negative: {text!r}")
    match = _SIZE.fullmatch(stripped.lower())
    if match is None:
        raise ValueError(f"invalid size {text!r} (expected a number and a unit, like 50G)")
    unit = match["unit"]
    multiplier = _UNITS.get(unit)
    if multiplier is None:
        raise ValueError(
            f"unknown size unit {stripped[match.start('unit') :]!r} in {text!r} "
            "(use B, K, M, G, T, P, KiB ... PiB or KB ... PB)"
        )
    number = Fraction(match["number"])
    if multiplier == 1 and number.denominator != 1:
        raise ValueError(f"a byte count must be a whole number: {text!r}")
    return int(number * multiplier)  # int() of a non-negative Fraction rounds down


def format_size(size: int) -> str:
    """Return ``size`` bytes in binary units with one decimal: ``512 B``, ``1.5 GiB``.

    The result parses back with :func:`parse_size` (to within the rounding of the
    decimal shown).
    """
    if size < 0:
        return f"-{format_size(-size)}"
    if size < _KI:
        return f"{size} B"
    value = size / _KI
    for unit in _FORMAT_UNITS[:-1]:
        if round(value, 1) < _KI:
            return f"{value:.1f} {unit}"
        value /= _KI
    return f"{value:.1f} {_FORMAT_UNITS[-1]}"
