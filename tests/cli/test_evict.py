"""``filecache evict ROOT --evict-above SIZE``: real runs, dry runs, open models, progress."""

from __future__ import annotations

import errno
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache

from .helpers import KIB, MODELS, TOTAL, Runner, run_cli, snapshot_tree

BY_KEY = {m.key: m for m in MODELS}
MODULE = (sys.executable, "-m", "vcti.filecache")

# (arguments after ROOT, the models removed in order). The total is 4684 KiB.
CASES = [
    # lru: mesh (1536 KiB) leaves 3148 KiB > 3072 KiB, then step9 leaves 1100 KiB.
    (["--evict-above", "3M"], ["fuselage/mesh", "engine/cfd/step9"]),
    # --evict-to 1M goes one further: tail leaves 1000 KiB.
    (["--evict-above", "3M", "--evict-to", "1M"], ["fuselage/mesh", "engine/cfd/step9", "tail"]),
    # lfu: mesh (1 access), then tail (2 accesses, older than run2) leaves 3048 KiB.
    (["--evict-above", "3M", "--policy", "lfu"], ["fuselage/mesh", "tail"]),
    # sized-lru (1.0's order): oldest access first, no ties here, so as lru.
    (["--evict-above", "3M", "--policy", "sized-lru"], ["fuselage/mesh", "engine/cfd/step9"]),
    # idle-size: step9 has the largest idle time x size; it alone leaves 2636 KiB.
    (["--evict-above", "3M", "--policy", "idle-size"], ["engine/cfd/step9"]),
    # Everything, least recently used first.
    (
        ["--evict-above", "0"],
        ["fuselage/mesh", "engine/cfd/step9", "tail", "wing/run1", "wing/run2"],
    ),
    # Exactly at the limit is not above it.
    (["--evict-above", str(TOTAL)], []),
    (["--evict-above", "4684K", "--evict-to", "0"], []),
]
IDS = [
    "lru",
    "lru-evict-to",
    "lfu",
    "sized-lru",
    "idle-size",
    "everything",
    "at-limit",
    "at-limit-to-0",
]


def _present(root: Path) -> list[str]:
    return sorted(m.key for m in MODELS if (root / m.key / "data.bin").exists())


@pytest.mark.parametrize(("args", "expected"), CASES, ids=IDS)
def test_evict_removes_models_in_policy_order(
    cli: Runner, cache_root: Path, args: list[str], expected: list[str]
) -> None:
    result = cli("evict", cache_root, *args, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "root",
        "dry_run",
        "policy",
        "evict_above",
        "evict_to",
        "before",
        "removed",
        "removed_count",
        "bytes_freed",
        "kept",
        "after",
    ]
    assert doc["dry_run"] is False
    assert [e["key"] for e in doc["removed"]] == expected
    assert doc["removed_count"] == len(expected)
    freed = sum(BY_KEY[key].size for key in expected)
    assert doc["bytes_freed"] == freed
    assert doc["kept"] == []
    assert doc["before"] == {"entry_count": 5, "total_size": TOTAL}
    assert doc["after"] == {"entry_count": 5 - len(expected), "total_size": TOTAL - freed}
    # The disk agrees.
    assert _present(cache_root) == sorted(set(BY_KEY) - set(expected))
    for key in expected:
        assert not (cache_root / key).exists()
    assert list((cache_root / ".filecache" / "trash").iterdir()) == []
    listed = json.loads(cli("ls", cache_root, "--json").stdout)
    assert sorted(e["key"] for e in listed["entries"]) == _present(cache_root)


@pytest.mark.parametrize(("args", "expected"), CASES, ids=IDS)
def test_dry_run_deletes_nothing_and_lists_what_a_real_run_removes(
    cli: Runner, cache_root: Path, args: list[str], expected: list[str]
) -> None:
    before = snapshot_tree(cache_root)
    dry = cli("evict", cache_root, *args, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert snapshot_tree(cache_root) == before
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True
    assert [e["key"] for e in planned["removed"]] == expected

    real = json.loads(cli("evict", cache_root, *args, "--json").stdout)
    assert real["removed"] == planned["removed"]
    assert real["bytes_freed"] == planned["bytes_freed"]
    assert real["after"] == planned["after"]


def test_evict_text_summary(cli: Runner, cache_root: Path) -> None:
    result = cli("evict", cache_root, "--evict-above", "3M", "--evict-to", "1M")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    freed = (1536 + 2048 + 100) * KIB
    assert result.stdout.splitlines() == [
        f"root:     {cache_root}",
        "policy:   lru",
        "limit:    3.0 MiB (3145728 bytes), evict down to 1.0 MiB (1048576 bytes)",
        f"before:   5 models, 4.6 MiB ({TOTAL} bytes)",
        f"removed:  3 models, 3.6 MiB ({freed} bytes)",
        "    1.5 MiB  fuselage/mesh",
        "    2.0 MiB  engine/cfd/step9",
        "  100.0 KiB  tail",
        f"after:    2 models, 1000.0 KiB ({TOTAL - freed} bytes)",
    ]


def test_dry_run_text_summary(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    result = cli("evict", cache_root, "--evict-above", "3M", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"root:     {cache_root}",
        "policy:   lru",
        "limit:    3.0 MiB (3145728 bytes)",
        f"before:   5 models, 4.6 MiB ({TOTAL} bytes)",
        f"would remove: 2 models, 3.5 MiB ({(1536 + 2048) * KIB} bytes)",
        "  1.5 MiB  fuselage/mesh",
        "  2.0 MiB  engine/cfd/step9",
        f"after (projected): 3 models, 1.1 MiB ({1100 * KIB} bytes)",
        "dry run: nothing was deleted",
    ]
    assert snapshot_tree(cache_root) == before


def test_evict_under_the_limit_touches_nothing(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    result = cli("evict", cache_root, "--evict-above", "5M")
    assert result.returncode == 0, result.stderr
    assert "nothing to evict: 4.6 MiB is not above 5.0 MiB" in result.stdout.splitlines()
    assert snapshot_tree(cache_root) == before


def test_evict_keeps_a_model_open_in_another_process(cli: Runner, cache_root: Path) -> None:
    # Opening counts an access; at mesh's own last-access time, it leaves the lru order as
    # it was. Flushing writes it now rather than whenever this process's manager does.
    mesh = BY_KEY["fuselage/mesh"]
    config = CacheManagerConfig(evict_above=2**62, interval=3600, clock=lambda: mesh.last_access)
    with FileCache(root=cache_root, config=config) as cache, cache.model(mesh.key):
        cache.manager.flush()
        result = cli("evict", cache_root, "--evict-above", "3M", "--json")
        text = cli("evict", cache_root, "--evict-above", "1M", "--policy", "lfu")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    # mesh comes first in lru order but is open: step9 goes instead, and is enough.
    assert doc["kept"] == [mesh.key]
    assert [e["key"] for e in doc["removed"]] == ["engine/cfd/step9"]
    assert text.returncode == 0, text.stderr
    assert "kept:     1 model (open in a process): fuselage/mesh" in text.stdout.splitlines()
    assert (cache_root / mesh.key / "data.bin").exists()


def test_evict_sweeps_staging_and_trash_leftovers(cli: Runner, cache_root: Path) -> None:
    trashed = cache_root / ".filecache" / "trash" / "0123456789abcdef"
    trashed.mkdir()
    (trashed / "old.bin").write_bytes(b"t" * 500)
    doc = json.loads(cli("evict", cache_root, "--evict-above", "3M", "--json").stdout)
    assert [e["key"] for e in doc["removed"]] == ["fuselage/mesh", "engine/cfd/step9"]
    assert not trashed.exists()


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # Linux reports the closed far end of a pty as EIO
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_progress_bar_when_stderr_is_a_terminal(cache_root: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*MODULE, "evict", str(cache_root), "--evict-above", "3M", "--json"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "TZ": "UTC"},
        )
        os.close(terminal)
        terminal = -1
        stderr = _read_all(controller).decode()
        stdout, _ = process.communicate(timeout=60)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, stderr
    assert [e["key"] for e in json.loads(stdout)["removed"]] == [
        "fuselage/mesh",
        "engine/cfd/step9",
    ]
    assert "evicting [" in stderr
    final = stderr.rstrip().rsplit("\r", 1)[-1].strip()  # the last redraw of the line
    bar = "[" + "#" * 30 + "]"
    assert final == f"evicting {bar} 100%  2 models removed, 3.5 MiB freed (1.6 MiB needed)"
    assert stderr.endswith("\n")


def test_no_progress_bar_for_a_dry_run_on_a_terminal(cache_root: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [*MODULE, "evict", str(cache_root), "--evict-above", "3M", "--dry-run"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        os.set_blocking(controller, False)
        try:
            stderr = os.read(controller, 65536)
        except (BlockingIOError, OSError):
            stderr = b""
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert stderr == b""
    assert b"would remove: 2 models" in result.stdout


def test_module_and_script_agree(cache_root: Path) -> None:
    module = run_cli("evict", cache_root, "--evict-above", "3M", "--dry-run", "--json")
    script = run_cli(
        "evict", cache_root, "--evict-above", "3M", "--dry-run", "--json", invocation="script"
    )
    assert module.returncode == script.returncode == 0
    assert json.loads(module.stdout) == json.loads(script.stdout)
