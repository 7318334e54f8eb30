"""``filecache rm ROOT KEY...``: removes the given models and only them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache

from .helpers import MODELS, Runner, snapshot_tree

ALL = sorted(m.key for m in MODELS)
MODULE = (sys.executable, "-m", "vcti.filecache")


def present(root: Path) -> list[str]:
    """The models of ``MODELS`` still in ``root``, by their data file."""
    return sorted(m.key for m in MODELS if (root / m.key / "data.bin").exists())


def model_files(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path below ``root`` but the cache's own bookkeeping."""
    return {p: v for p, v in snapshot_tree(root).items() if ".filecache" not in p}


def hold(root: Path) -> FileCache:
    """A FileCache of this process on ``root``, to hold models open (the CLI is another)."""
    return FileCache(root=root, config=CacheManagerConfig(evict_above=2**62, interval=3600))


TAIL = "removed tail (100.0 KiB)"
FREED_TAIL = "freed 100.0 KiB (102400 bytes)"


def test_rm_removes_the_given_models(cli: Runner, cache_root: Path) -> None:
    result = cli("rm", cache_root, "tail", "wing/run1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "removed tail (100.0 KiB)",
        "removed wing/run1 (300.0 KiB)",
        "freed 400.0 KiB (409600 bytes)",
    ]
    assert present(cache_root) == sorted(set(ALL) - {"tail", "wing/run1"})
    assert not (cache_root / "tail").exists()
    assert (cache_root / "wing" / "run2" / "data.bin").exists()


def test_rm_json(cli: Runner, cache_root: Path) -> None:
    result = cli("rm", cache_root, "engine/cfd/step9", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {
        "root": str(cache_root),
        "removed": ["engine/cfd/step9"],
        "freed": 2048 * 1024,
        "missing": [],
        "open": [],
        "failed": [],
        "timeout": 10.0,  # the documented default
    }
    assert not (cache_root / "engine").exists()  # emptied parents go with the model


def test_rm_takes_each_key_once_and_ignores_a_trailing_slash(cli: Runner, cache_root: Path) -> None:
    result = cli("rm", cache_root, "tail", "wing/run2/", "tail", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == ["tail", "wing/run2"]
    assert present(cache_root) == sorted(set(ALL) - {"tail", "wing/run2"})


def test_a_missing_key_is_reported_after_the_others_are_removed(
    cli: Runner, cache_root: Path
) -> None:
    result = cli("rm", cache_root, "nope", "tail", "wing", "wing/run1/sub")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [TAIL, FREED_TAIL]
    assert result.stderr.splitlines() == [
        "filecache: error: not removed: 'nope' (no such model), 'wing' (no such model), "
        "'wing/run1/sub' (no such model)"
    ]
    # 'wing' holds two models but is not one: nothing under it goes.
    assert present(cache_root) == sorted(set(ALL) - {"tail"})

    doc = json.loads(cli("rm", cache_root, "tail", "fuselage/mesh", "--json").stdout)
    assert doc["removed"] == ["fuselage/mesh"]
    assert doc["missing"] == ["tail"]


@pytest.mark.parametrize("bad", ["../tail", "wing//run1", ".filecache", "/tmp", "a\\b"])
def test_a_malformed_key_removes_nothing(cli: Runner, cache_root: Path, bad: str) -> None:
    before = snapshot_tree(cache_root)
    result = cli("rm", cache_root, "tail", "wing/run1", bad, "fuselage/mesh")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("filecache: error: argument KEY: model key ")
    assert snapshot_tree(cache_root) == before


def test_a_model_that_stays_open_is_kept_and_reported(cli: Runner, cache_root: Path) -> None:
    before = model_files(cache_root / "wing" / "run1")
    with hold(cache_root) as cache, cache.model("wing/run1"):
        result = cli("rm", cache_root, "wing/run1", "tail", "--timeout", "0.5")
        assert (cache_root / "wing" / "run1" / "data.bin").exists()
    assert result.returncode == 1
    assert result.stdout.splitlines() == [TAIL, FREED_TAIL]
    assert result.stderr.splitlines() == [
        "filecache: error: not removed: 'wing/run1' (still open after 0.5s)"
    ]
    assert model_files(cache_root / "wing" / "run1") == before


def test_an_open_model_is_kept_in_json(cli: Runner, cache_root: Path) -> None:
    with hold(cache_root) as cache, cache.model("tail"):
        result = cli("rm", cache_root, "tail", "--timeout", "0.2", "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["open"] == ["tail"]
    assert doc["removed"] == []
    assert doc["timeout"] == 0.2
    assert "still open after 0.2s" in result.stderr
    assert (cache_root / "tail" / "data.bin").exists()


def test_rm_waits_for_an_open_model_to_be_closed(cache_root: Path) -> None:
    with hold(cache_root) as cache:
        model = cache.model("tail")
        model.__enter__()
        process = subprocess.Popen(
            [*MODULE, "rm", str(cache_root), "tail", "--timeout", "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)  # let the command start; it cannot remove an open model
            assert process.poll() is None, process.communicate()
            assert (cache_root / "tail" / "data.bin").exists()
        finally:
            model.__exit__(None, None, None)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.splitlines() == [TAIL, FREED_TAIL]
    assert not (cache_root / "tail").exists()
