"""``rm`` and ``clear`` on a terminal: they say what they will free, then ask."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache

from .helpers import MODELS, TOTAL, Runner, snapshot_tree


def on_a_terminal(
    *args: str | os.PathLike[str], answer: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the command with a terminal as stdin; type ``answer`` (None: end of input)."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"\x04" if answer is None else answer.encode())  # ^D: end of input
        return subprocess.run(
            [sys.executable, "-m", "vcti.filecache", *map(str, args)],
            stdin=terminal,
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)


def present(root: Path) -> list[str]:
    return sorted(m.key for m in MODELS if (root / m.key / "data.bin").exists())


@pytest.mark.parametrize("answer", ["n\n", "\n", "maybe\n", None], ids=repr)
def test_rm_asks_and_a_no_removes_nothing(cache_root: Path, answer: str | None) -> None:
    before = snapshot_tree(cache_root)
    result = on_a_terminal("rm", cache_root, "tail", "wing/run1", "nope", answer=answer)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[:3] == [
        f"rm will remove 2 models, 400.0 KiB (409600 bytes), from {cache_root}:",
        "  100.0 KiB  tail",
        "  300.0 KiB  wing/run1",
    ]
    assert "Remove them? [y/N] " in result.stderr
    assert result.stderr.endswith("filecache: error: nothing was removed\n")
    assert snapshot_tree(cache_root) == before


@pytest.mark.parametrize("answer", ["y\n", "YES\n"])
def test_rm_removes_on_yes(cache_root: Path, answer: str) -> None:
    result = on_a_terminal("rm", cache_root, "tail", "wing/run1", answer=answer)
    assert result.returncode == 0, result.stderr
    assert "Remove them? [y/N]" in result.stderr
    assert result.stdout.splitlines()[-1] == "freed 400.0 KiB (409600 bytes)"
    assert present(cache_root) == ["engine/cfd/step9", "fuselage/mesh", "wing/run2"]


def test_rm_yes_asks_nothing_on_a_terminal(cache_root: Path) -> None:
    result = on_a_terminal("rm", cache_root, "tail", "--yes", "--json", answer="n\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["freed"] == 100 * 1024


def test_rm_without_a_terminal_asks_nothing(cli: Runner, cache_root: Path) -> None:
    result = cli("rm", cache_root, "tail")  # stdin is /dev/null, as in a script
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert present(cache_root) == sorted(m.key for m in MODELS if m.key != "tail")


@pytest.mark.parametrize("answer", ["n\n", None], ids=repr)
def test_clear_asks_and_a_no_removes_nothing(cache_root: Path, answer: str | None) -> None:
    before = snapshot_tree(cache_root)
    result = on_a_terminal("clear", cache_root, answer=answer)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"clear will remove 5 models, 4.6 MiB ({TOTAL} bytes), from {cache_root} "
        "(models open in a process are kept)\nRemove them? [y/N] "
    )
    assert result.stderr.endswith("filecache: error: nothing was removed\n")
    assert snapshot_tree(cache_root) == before


def test_clear_removes_on_yes(cache_root: Path) -> None:
    result = on_a_terminal("clear", cache_root, "--json", answer="y\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["freed"] == TOTAL
    assert present(cache_root) == []


def test_clear_yes_asks_nothing_on_a_terminal(cache_root: Path) -> None:
    result = on_a_terminal("clear", cache_root, "-y", answer="n\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert present(cache_root) == []


def test_control_characters_in_keys_are_escaped_in_the_prompt(cache_root: Path) -> None:
    config = CacheManagerConfig(evict_above=2**62)
    with FileCache(root=cache_root, config=config) as cache, cache.model("odd\nkey") as model:
        Path(model.path, "data.bin").write_bytes(b"x" * 10)
    result = on_a_terminal("rm", cache_root, "odd\nkey", answer="y\n")
    assert result.returncode == 0, result.stderr
    assert "  10 B  odd\\nkey\n" in result.stderr
    assert result.stdout.splitlines()[0] == "removed odd\\nkey (10 B)"
