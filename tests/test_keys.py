"""Keys: what is accepted, what is rejected, and that no key escapes the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcti.filecache import KeyValidationError, LocalStorage
from vcti.filecache._keys import RESERVED, ancestors, is_nested, validate_key


@pytest.mark.parametrize("key", ["m", "ab/cd/model_abc123", "a b/ü/x.y", "..a/b..", "a/.hidden"])
def test_valid(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "..",
        "../x",
        "a/../../x",
        "a/./b",
        ".",
        "a//b",
        "a/",
        "a\\..\\b",
        "a\x00",
        RESERVED,
        f"a/{RESERVED}/meta.json",
        f"{RESERVED}-x",
        "x" * 256,
    ],
)
def test_invalid(key: str) -> None:
    with pytest.raises(KeyValidationError):
        validate_key(key)


def test_type() -> None:
    with pytest.raises(TypeError):
        validate_key(b"bytes")


def test_helpers() -> None:
    assert ancestors("a/b/c") == ["a", "a/b"]
    assert ancestors("a") == []
    assert is_nested("a/b", "a")
    assert not is_nested("ab", "a")
    assert not is_nested("a", "a")


alphabet = st.sampled_from(["a", "b", ".", "/", "\\", "\x00", "~", "é", RESERVED[1:4], " "])
keys = st.lists(alphabet, min_size=0, max_size=12).map("".join) | st.text(max_size=30)


@given(keys)
@settings(max_examples=500, deadline=None)
def test_no_valid_key_escapes_the_root_or_hits_internal_names(key: str) -> None:
    root = "/srv/cache"
    try:
        validate_key(key)
    except KeyValidationError:
        return
    path = LocalStorage(root).path(key)
    assert os.path.normpath(path) == path
    assert path.startswith(root + os.sep)
    relative = Path(path).relative_to(root)
    assert relative.parts == tuple(key.split("/"))
    assert not any(part.startswith(RESERVED) for part in relative.parts)
