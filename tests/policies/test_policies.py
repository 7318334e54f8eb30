"""Eviction policies order entries; the manager does the rest."""

from __future__ import annotations

from vcti.filecache import CacheEntry, EvictionPolicy, LfuPolicy, LruPolicy, SizedLruPolicy


def entry(key: str, size: int = 1, count: int = 1, last: float = 0.0) -> CacheEntry:
    return CacheEntry(key=key, size=size, access_count=count, last_access=last, created=0.0)


ENTRIES = [
    entry("recent-small", size=10, count=1, last=900.0),
    entry("old-small", size=10, count=9, last=100.0),
    entry("old-big", size=1000, count=5, last=200.0),
    entry("recent-big", size=1000, count=1, last=800.0),
]


def keys(entries: list[CacheEntry]) -> list[str]:
    return [e.key for e in entries]


def test_all_are_policies() -> None:
    for policy in (LruPolicy(), LfuPolicy(), SizedLruPolicy()):
        assert isinstance(policy, EvictionPolicy)
    assert [p.name for p in (LruPolicy(), LfuPolicy(), SizedLruPolicy())] == [
        "lru",
        "lfu",
        "sized-lru",
    ]


def test_lru_oldest_access_first() -> None:
    assert keys(LruPolicy().order(ENTRIES)) == [
        "old-small",
        "old-big",
        "recent-big",
        "recent-small",
    ]


def test_lfu_fewest_accesses_first_ties_oldest_first() -> None:
    assert keys(LfuPolicy().order(ENTRIES)) == [
        "recent-big",
        "recent-small",
        "old-big",
        "old-small",
    ]


def test_sized_lru_largest_idle_times_size_first() -> None:
    policy = SizedLruPolicy(clock=lambda: 1000.0)
    # weights: old-big 800*1000, recent-big 200*1000, old-small 900*10, recent-small 100*10
    assert keys(policy.order(ENTRIES)) == ["old-big", "recent-big", "old-small", "recent-small"]


def test_policies_do_not_modify_their_input() -> None:
    before = list(ENTRIES)
    for policy in (LruPolicy(), LfuPolicy(), SizedLruPolicy()):
        policy.order(ENTRIES)
    assert before == ENTRIES
