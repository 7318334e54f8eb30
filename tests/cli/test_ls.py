"""``filecache ls ROOT``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache
from vcti.filecache.cli._common import format_age

from .helpers import (
    BASE,
    KIB,
    MODELS,
    TOTAL,
    Model,
    Runner,
    build_cache,
    local_time,
    snapshot_tree,
)

BY_KEY = {m.key: m for m in MODELS}

ORDERS = {
    # last access: mesh 2000, step9 4600, tail 40000, run1 50001, run2 60000
    "lru": ["fuselage/mesh", "engine/cfd/step9", "tail", "wing/run1", "wing/run2"],
    # accesses: mesh 1; tail 2 and run2 2 (tail older); step9 3 and run1 3 (step9 older)
    "lfu": ["fuselage/mesh", "tail", "wing/run2", "engine/cfd/step9", "wing/run1"],
    "size": ["engine/cfd/step9", "fuselage/mesh", "wing/run2", "wing/run1", "tail"],
    "age": ["wing/run1", "wing/run2", "fuselage/mesh", "tail", "engine/cfd/step9"],
}


def test_the_orders_under_test_differ() -> None:
    assert len({tuple(order) for order in ORDERS.values()}) == len(ORDERS)


@pytest.mark.parametrize("sort", list(ORDERS))
def test_ls_json_sort_orders(cli: Runner, cache_root: Path, sort: str) -> None:
    result = cli("ls", cache_root, "--sort", sort, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert list(doc) == ["root", "sort", "prefix", "entry_count", "total_size", "entries"]
    assert doc["root"] == str(cache_root)
    assert doc["sort"] == sort
    assert doc["prefix"] is None
    assert doc["entry_count"] == 5
    assert doc["total_size"] == TOTAL
    assert [e["key"] for e in doc["entries"]] == ORDERS[sort]


def test_ls_json_entries(cli: Runner, cache_root: Path) -> None:
    doc = json.loads(cli("ls", cache_root, "--json").stdout)
    assert doc["sort"] == "lru"  # the default
    for entry in doc["entries"]:
        model = BY_KEY[entry["key"]]
        fill_seconds = entry.pop("fill_seconds")
        assert isinstance(fill_seconds, float)
        assert fill_seconds >= 0
        assert entry == {
            "key": model.key,
            "size": model.size,
            "access_count": model.access_count,
            "last_access": model.last_access,
            "created": BASE + model.created,
            "version": None,
        }


@pytest.mark.parametrize("sort", list(ORDERS))
def test_ls_text(cli: Runner, cache_root: Path, sort: str) -> None:
    result = cli("ls", cache_root, "--sort", sort, "--absolute-times")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "KEY", "SIZE", "ACCESSES", "LAST", "ACCESS", "CREATED", "FILL", "VERSION"
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == ORDERS[sort]
    for row in rows:
        key, size, unit, count, *times, fill, seconds, version = row.split()
        assert (seconds, version) == ("s", "-")
        assert float(fill) >= 0
        model = BY_KEY[key]
        assert (
            f"{size} {unit}"
            == {
                300 * 1024: "300.0 KiB",
                700 * 1024: "700.0 KiB",
                1536 * 1024: "1.5 MiB",
                100 * 1024: "100.0 KiB",
                2048 * 1024: "2.0 MiB",
            }[model.size]
        )
        assert int(count) == model.access_count
        assert " ".join(times[:2]) == local_time(model.last_access)
        assert " ".join(times[2:]) == local_time(BASE + model.created)


def test_ls_text_columns_line_up(cli: Runner, cache_root: Path) -> None:
    lines = cli("ls", cache_root, "--absolute-times").stdout.splitlines()
    header = lines[0]
    for column in ("LAST ACCESS", "CREATED"):
        start = header.index(column)
        assert all(line[start : start + 4].startswith("20") for line in lines[1:])
    size_end = header.index("SIZE") + len("SIZE")
    assert all(
        line[size_end - 3 : size_end] == "KiB" or line[size_end - 3 : size_end] == "MiB"
        for line in lines[1:]
    )


def test_ls_of_an_empty_cache(cli: Runner, tmp_path: Path) -> None:
    root = build_cache(tmp_path / "cache", [])
    assert cli("ls", root).stdout.splitlines() == [
        "KEY  SIZE  ACCESSES  LAST ACCESS  CREATED  FILL  VERSION"
    ]
    assert json.loads(cli("ls", root, "--json").stdout)["entries"] == []


def test_ls_changes_nothing(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    for sort in ORDERS:
        assert cli("ls", cache_root, "--sort", sort).returncode == 0
    assert snapshot_tree(cache_root) == before


# Keys that share leading characters but not whole components.
PREFIX_MODELS = [
    Model("ab/cd/x", 1 * KIB, created=0),
    Model("ab/cd/y", 2 * KIB, created=1),
    Model("ab/e", 4 * KIB, created=2),
    Model("abc/x", 8 * KIB, created=3),
    Model("ab.d/x", 16 * KIB, created=4),
    Model("abx", 32 * KIB, created=5),
]


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        ("ab", ["ab/cd/x", "ab/cd/y", "ab/e"]),
        ("ab/", ["ab/cd/x", "ab/cd/y", "ab/e"]),  # shell completion's trailing slash
        ("ab/cd", ["ab/cd/x", "ab/cd/y"]),
        ("ab/c", []),
        ("a", []),
        ("abc", ["abc/x"]),
        ("abc/x", ["abc/x"]),  # a model is under itself
        ("abx", ["abx"]),
        ("ab.d", ["ab.d/x"]),
        ("zz", []),
    ],
)
def test_ls_prefix_matches_whole_components(
    cli: Runner, tmp_path: Path, prefix: str, keys: list[str]
) -> None:
    root = build_cache(tmp_path / "cache", PREFIX_MODELS)
    result = cli("ls", root, "--prefix", prefix, "--sort", "age", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["prefix"] == prefix.rstrip("/")
    assert [e["key"] for e in doc["entries"]] == keys
    assert doc["entry_count"] == len(keys)
    assert doc["total_size"] == sum(m.size for m in PREFIX_MODELS if m.key in keys)
    text = cli("ls", root, "--prefix", prefix, "--sort", "age").stdout.splitlines()
    assert [line.split()[0] for line in text[1:]] == keys


def test_ls_prefix_changes_nothing(cli: Runner, cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    assert cli("ls", cache_root, "--prefix", "wing").returncode == 0
    assert snapshot_tree(cache_root) == before


def test_ls_shows_ages_fill_times_and_versions(cli: Runner, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    config = CacheManagerConfig(evict_above=2**62, interval=3600)
    with FileCache(root=root, config=config) as cache:
        with cache.model("cfd/wing", version="mesh-v2") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 10)
        with cache.model("odd\nkey\x1b[31m") as model:
            Path(model.path, "data.bin").write_bytes(b"x" * 10)
    header, *rows = cli("ls", root, "--sort", "age").stdout.splitlines()
    assert header.split()[-2:] == ["FILL", "VERSION"]
    assert len(rows) == 2  # the newline in a key does not split its row
    first, second = rows
    assert first.startswith("cfd/wing ")
    assert first.endswith(" mesh-v2")
    assert re.search(r"  (just now|\d+ seconds? ago)  ", first), first
    assert re.search(r" \d+\.\d s  ", first), first
    assert second.startswith("odd\\nkey\\x1b[31m ")
    assert second.endswith(" -")
    (entry,) = [e for e in json.loads(cli("ls", root, "--json").stdout)["entries"] if e["version"]]
    assert entry["version"] == "mesh-v2"
    odd = [e["key"] for e in json.loads(cli("ls", root, "--json").stdout)["entries"]]
    assert "odd\nkey\x1b[31m" in odd  # JSON keeps the key as it is


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        (0.4, "just now"),
        (-30, "just now"),  # ahead of this host's clock
        (1, "1 second ago"),
        (59, "59 seconds ago"),
        (60, "1 minute ago"),
        (3 * 3600 + 59, "3 hours ago"),
        (86_400, "1 day ago"),
        (3 * 86_400, "3 days ago"),
        (14 * 86_400, "2 weeks ago"),
        (60 * 86_400, "2 months ago"),
        (800 * 86_400, "2 years ago"),
    ],
)
def test_format_age(seconds: float, age: str) -> None:
    assert format_age(BASE - seconds, BASE) == age
