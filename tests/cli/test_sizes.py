"""Parsing and formatting human sizes (``vcti.filecache._sizes``)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcti.filecache._sizes import SIZE_UNITS_HELP, format_size, parse_size

KI, MI, GI, TI, PI = (1024**n for n in range(1, 6))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("123", 123),
        ("123B", 123),
        ("123 b", 123),
        ("10.0", 10),
        ("1K", KI),
        ("1k", KI),
        ("1KiB", KI),
        ("1kib", KI),
        ("1KB", 1000),
        ("1kB", 1000),
        ("1M", MI),
        ("1MiB", MI),
        ("1MB", 1000**2),
        ("50G", 50 * GI),
        ("50g", 50 * GI),
        ("50GiB", 50 * GI),
        ("50GB", 50 * 1000**3),
        ("2T", 2 * TI),
        ("2TiB", 2 * TI),
        ("2TB", 2 * 1000**4),
        ("1P", PI),
        ("1PB", 1000**5),
        ("1.5G", GI + GI // 2),
        ("1.5 GiB", GI + GI // 2),
        ("0.5K", 512),
        (".5K", 512),
        ("1.K", KI),
        ("  40G  ", 40 * GI),
        ("0.1K", 102),  # 102.4 bytes, rounded down
        ("1.0000000001T", TI + 109),  # exact arithmetic, no float rounding
        ("100000000000000000000P", 10**20 * PI),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty size"),
        ("   ", "empty size"),
        ("-1", "must not be negative"),
        ("-1G", "must not be negative"),
        ("-0.5K", "must not be negative"),
        ("5X", "unknown size unit 'X'"),
        ("5 GBB", "unknown size unit 'GBB'"),
        ("5Gi", "unknown size unit 'Gi'"),
        ("5 bytes", "unknown size unit 'bytes'"),
        ("1.5", "whole number"),
        ("0.5B", "whole number"),
        ("G", "invalid size"),
        ("1e9", "invalid size"),
        ("1,5G", "invalid size"),
        ("1_000", "invalid size"),
        ("+1G", "invalid size"),
        ("1..5G", "invalid size"),
        ("1.5.5G", "invalid size"),
        ("1 G B", "invalid size"),
        ("nan", "invalid size"),
        ("inf", "invalid size"),
        ("\u0661G", "invalid size"),  # ARABIC-INDIC DIGIT ONE
        ("1\u00a0G", "invalid size"),  # only ASCII spaces between number and unit
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (MI - 1, "1.0 MiB"),  # 1023.999 KiB would show as "1024.0 KiB"
        (300 * KI, "300.0 KiB"),
        (GI + GI // 2, "1.5 GiB"),
        (50 * GI, "50.0 GiB"),
        (3 * TI, "3.0 TiB"),
        (PI, "1.0 PiB"),
        (2048 * PI, "2048.0 PiB"),
        (-1536, "-1.5 KiB"),
    ],
)
def test_format_size(size: int, expected: str) -> None:
    assert format_size(size) == expected


@given(st.integers(min_value=0, max_value=2**70))
def test_formatted_sizes_parse_back(size: int) -> None:
    parsed = parse_size(format_size(size))
    # One decimal of a unit: off by at most 0.05 unit, and a unit is at most the size.
    assert abs(parsed - size) <= 0.05 * size + 1


def test_help_text_names_every_unit_family() -> None:
    for word in ("KiB", "KB", "powers of 1024", "powers of 1000", "1.5G"):
        assert word in SIZE_UNITS_HELP
