"""Eviction policies: their orders, 1.0's selections, and their event-driven states."""

from __future__ import annotations

import random

import pytest

from vcti.filecache import (
    CacheEntry,
    CostAwarePolicy,
    EvictionPolicy,
    GdsfPolicy,
    IdleSizePolicy,
    LargestFirstPolicy,
    LfuPolicy,
    LruPolicy,
    SievePolicy,
    SizedLruPolicy,
)
from vcti.filecache._victims import Tracker, candidates, evict_until
from vcti.filecache.policies.cost_aware import DEFAULT_SECONDS_PER_BYTE


def entry(
    key: str,
    *,
    size: int = 1,
    count: int = 1,
    last: float = 0.0,
    created: float = 0.0,
    cost: float | None = None,
) -> CacheEntry:
    return CacheEntry(
        key=key,
        size=size,
        access_count=count,
        last_access=last,
        created=created,
        fill_seconds=cost,
    )


ENTRIES = [
    entry("recent-small", size=10, count=1, last=900.0, created=40.0),
    entry("old-small", size=10, count=9, last=100.0, created=10.0),
    entry("old-big", size=1000, count=5, last=200.0, created=20.0),
    entry("recent-big", size=1000, count=1, last=800.0, created=30.0),
]

ALL = (
    LruPolicy(),
    LfuPolicy(),
    SizedLruPolicy(),
    IdleSizePolicy(),
    GdsfPolicy(),
    CostAwarePolicy(),
    SievePolicy(),
    LargestFirstPolicy(),
)


def keys(entries: list[CacheEntry]) -> list[str]:
    return [e.key for e in entries]


def walk(state, evict: int = 0) -> list[str]:
    """Walk the state's victims, evicting the first ``evict`` of them."""
    out: list[str] = []
    for key in state.victims():
        out.append(key)
        if len(out) <= evict:
            state.evicted(key)
    return out


def evict_one(state) -> str:
    """Evict the state's first victim, and stop the walk there."""
    victims = state.victims()
    key = next(victims)
    state.evicted(key)
    victims.close()
    return key


def test_all_are_policies_with_names() -> None:
    for policy in ALL:
        assert isinstance(policy, EvictionPolicy)
    assert [p.name for p in ALL] == [
        "lru",
        "lfu",
        "sized-lru",
        "idle-size",
        "gdsf",
        "cost-aware",
        "sieve",
        "largest",
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


def test_sized_lru_is_1_0s_order_oldest_first_ties_larger_first() -> None:
    tied = [
        entry("small", size=10, last=100.0),
        entry("big", size=1000, last=100.0),
        entry("older", size=1, last=50.0),
        entry("newer", size=5000, last=200.0),
    ]
    assert keys(SizedLruPolicy().order(tied)) == ["older", "big", "small", "newer"]


def test_idle_size_largest_idle_times_size_first() -> None:
    policy = IdleSizePolicy(clock=lambda: 1000.0)
    # weights: old-big 800*1000, recent-big 200*1000, old-small 900*10, recent-small 100*10
    assert keys(policy.order(ENTRIES)) == ["old-big", "recent-big", "old-small", "recent-small"]


def test_gdsf_lowest_frequency_per_byte_first() -> None:
    # count/size: recent-big 0.001, old-big 0.005, recent-small 0.1, old-small 0.9
    assert keys(GdsfPolicy().order(ENTRIES)) == [
        "recent-big",
        "old-big",
        "recent-small",
        "old-small",
    ]


def test_cost_aware_cheapest_to_recompute_per_byte_first() -> None:
    models = [
        entry("slow-big", size=1000, cost=500.0, created=1),  # 0.5 s/B
        entry("fast-big", size=1000, cost=10.0, created=2),  # 0.01 s/B
        entry("slow-small", size=10, cost=30.0, created=3),  # 3 s/B
        entry("fast-small-popular", size=10, count=50, cost=0.01, created=4),  # 0.05 s/B
    ]
    assert keys(CostAwarePolicy().order(models)) == [
        "fast-big",
        "fast-small-popular",
        "slow-big",
        "slow-small",
    ]


def test_cost_aware_unknown_cost_is_the_average_per_byte_of_the_known() -> None:
    # Known: 100 s over 1000 B and 1 s over 1000 B: 0.0505 s/B on average.
    models = [
        entry("dear", size=1000, cost=100.0, created=1),  # 0.1 s/B
        entry("cheap", size=1000, cost=1.0, created=2),  # 0.001 s/B
        entry("unknown", size=500, cost=None, created=3),  # assumed 0.0505 s/B
    ]
    assert keys(CostAwarePolicy().order(models)) == ["cheap", "unknown", "dear"]
    state = CostAwarePolicy().new_state()
    for model in models:
        state.insert(model)
    assert state.seconds_per_byte(models[2]) == pytest.approx(101.0 / 2000)


def test_cost_aware_with_no_known_cost_orders_by_frequency() -> None:
    models = [
        entry("often", size=10, count=5, created=1),
        entry("once-small", size=10, count=1, created=2),
        entry("once-big", size=10_000, count=1, created=3),
        entry("twice", size=99_999, count=2, created=4),
    ]
    # Size plays no part: frequency, then first in.
    assert keys(CostAwarePolicy().order(models)) == ["once-small", "once-big", "twice", "often"]
    assert CostAwarePolicy().new_state().seconds_per_byte(models[0]) == DEFAULT_SECONDS_PER_BYTE


def test_sieve_order_unvisited_first_oldest_first() -> None:
    models = [
        entry("a", created=1, count=3),
        entry("b", created=2, count=1),
        entry("c", created=3, count=2),
        entry("d", created=4, count=1),
    ]
    assert keys(SievePolicy().order(models)) == ["b", "d", "a", "c"]


def test_largest_first() -> None:
    assert keys(LargestFirstPolicy().order(ENTRIES))[:2] in (
        ["old-big", "recent-big"],
        ["recent-big", "old-big"],
    )
    assert keys(LargestFirstPolicy().order(ENTRIES))[2:] in (
        ["old-small", "recent-small"],
        ["recent-small", "old-small"],
    )
    sizes = [entry(f"m{n}", size=n * 37 % 11) for n in range(30)]
    ordered = [e.size for e in LargestFirstPolicy().order(sizes)]
    assert ordered == sorted(ordered, reverse=True)


@pytest.mark.parametrize("policy", ALL, ids=lambda p: p.name)
def test_select_evictions_stops_as_soon_as_enough_is_selected(policy) -> None:
    ordered = policy.order(ENTRIES)
    assert policy.select_evictions(list(ENTRIES), 0) == []
    assert policy.select_evictions([], 10**9) == []
    chosen = policy.select_evictions(list(ENTRIES), ordered[0].size)
    assert chosen == ordered[:1]
    chosen = policy.select_evictions(list(ENTRIES), ordered[0].size + 1)
    assert chosen == ordered[:2]
    assert policy.select_evictions(list(ENTRIES), 10**9) == ordered


@pytest.mark.parametrize("policy", ALL, ids=lambda p: p.name)
def test_policies_do_not_modify_their_input(policy) -> None:
    before = list(ENTRIES)
    policy.order(ENTRIES)
    policy.select_evictions(ENTRIES, 100)
    assert before == ENTRIES


def test_lru_state_moves_an_accessed_model_to_the_end() -> None:
    state = LruPolicy().new_state()
    for key in "abc":
        state.insert(entry(key))
    state.access(entry("a"), 1)
    assert walk(state, evict=1) == ["b", "c", "a"]
    assert walk(state) == ["c", "a"]


def test_lfu_state_ties_go_to_the_least_recently_counted() -> None:
    state = LfuPolicy().new_state()
    for key in "abcd":
        state.insert(entry(key))
    state.access(entry("a"), 1)
    state.access(entry("b"), 1)
    state.access(entry("c"), 2)
    # d: 1; a and b: 2, a counted first; c: 3
    assert walk(state, evict=1) == ["d", "a", "b", "c"]
    state.insert(entry("d"))  # an evicted model comes back counting from 1
    assert walk(state) == ["d", "a", "b", "c"]


def test_gdsf_state_ages_with_the_priority_of_the_last_eviction() -> None:
    state = GdsfPolicy().new_state()
    state.insert(entry("big", size=1_000_000))  # priority 1
    state.insert(entry("small", size=1000))  # priority 1000
    assert walk(state, evict=1) == ["big", "small"]
    assert state.clock == 1.0
    state.insert(entry("new-big", size=1_000_000))  # priority L + 1 = 2
    assert walk(state) == ["new-big", "small"]
    state.access(entry("new-big", size=1_000_000), 2000)  # 1 + 2001 > 1000
    assert walk(state) == ["small", "new-big"]


def test_cost_aware_state_ages_like_gdsf() -> None:
    state = CostAwarePolicy().new_state()
    state.insert(entry("cheap", size=100, cost=1.0))  # 0.01
    state.insert(entry("dear", size=100, cost=50.0))  # 0.5
    assert walk(state, evict=1) == ["cheap", "dear"]
    assert state.clock == pytest.approx(0.01)
    state.insert(entry("cheap", size=100, cost=1.0))  # 0.01 + 0.01
    assert walk(state) == ["cheap", "dear"]


def test_sieve_state_passes_visited_models_and_clears_their_bit() -> None:
    state = SievePolicy().new_state()
    for key in "abcd":
        state.insert(entry(key))
    state.access(entry("a"), 1)
    state.access(entry("c"), 1)
    # The hand starts at the oldest: a is visited (cleared), b goes.
    assert evict_one(state) == "b"
    # The hand is now at c (visited, cleared), then d.
    assert evict_one(state) == "d"
    # Past the newest the hand wraps to the oldest: a (cleared before) goes.
    state.insert(entry("e"))
    assert evict_one(state) == "a"
    # Then c, whose bit the hand cleared, before e, the newest.
    assert walk(state) == ["c", "e"]


def test_sieve_passes_over_a_kept_model() -> None:
    state = SievePolicy().new_state()
    for key in "abc":
        state.insert(entry(key))
    victims = state.victims()
    assert next(victims) == "a"  # kept: open
    assert next(victims) == "b"
    state.evicted("b")
    assert next(victims) == "c"
    state.evicted("c")
    assert next(victims, None) is None  # a was yielded already: once per walk
    assert walk(state) == ["a"]


def test_sieve_hand_moves_past_a_model_kept_at_the_end_of_a_walk() -> None:
    state = SievePolicy().new_state()
    for key in "abc":
        state.insert(entry(key))
    victims = state.victims()
    assert next(victims) == "a"  # kept (open), and the walk ends there
    victims.close()
    # The next walk starts past a: b and c first, a only once the hand wraps.
    assert walk(state) == ["b", "c", "a"]


def test_largest_state_tracks_size_changes() -> None:
    state = LargestFirstPolicy().new_state()
    state.insert(entry("a", size=10))
    state.insert(entry("b", size=20))
    state.insert(entry("c", size=30))
    state.access(entry("a", size=40), 1)
    state.access(entry("c", size=5), 1)
    assert walk(state) == ["a", "b", "c"]
    state.forget("b")
    assert walk(state, evict=1) == ["a", "c"]
    assert walk(state) == ["c"]


@pytest.mark.parametrize("policy", [p for p in ALL if p.name != "idle-size"], ids=lambda p: p.name)
def test_the_cache_walk_drives_every_state_through_a_tracker(policy) -> None:
    models = {e.key: e for e in ENTRIES}
    tracker = Tracker(policy)
    tracker.sync(list(models.values()))
    required = 1005
    outcome = evict_until(
        candidates(policy, models, required, tracker.state), required, lambda e: True
    )
    tracker.evicted([e.key for e in outcome.removed])
    assert outcome.freed >= required
    assert outcome.freed - outcome.removed[-1].size < required
    left = [e for k, e in models.items() if k not in {r.key for r in outcome.removed}]
    # What is left survives a new leader reading the stored state.
    again = Tracker(policy, tracker.dump())
    again.sync(left)
    assert sorted(again.state.victims()) == sorted(e.key for e in left)


@pytest.mark.parametrize("epoch", [0.0, 1.7e9], ids=["small-times", "epoch-times"])
def test_idle_size_state_walks_in_the_order_of_order(epoch: float) -> None:
    # The state's tournament against the policy's sort, through random inserts, accesses,
    # forgets and walks that evict some victims and keep others, at a clock that advances
    # by steps from nothing to 100 s (ties included), with sizes that differ by 1 in 10^9.
    for trial in range(200):
        rng = random.Random(trial)
        clock = [epoch]
        policy = IdleSizePolicy(lambda clock=clock: clock[0])
        state = policy.new_state()
        models: dict[str, CacheEntry] = {}
        for _ in range(rng.randrange(5, 120)):
            clock[0] += rng.choice([0, 0, 0.5, 1, 3, 1e-9, 100])
            draw = rng.random()
            if draw < 0.5 or not models:
                key = f"k{rng.randrange(40)}"
                size = rng.choice([1, 2, 3, 10, 1000, 10**9, 10**9 + 1])
                model = CacheEntry(key, size, 1, clock[0], clock[0])
                models[key] = model
                if rng.random() < 0.5:
                    state.insert(model)
                else:
                    state.access(model, 1)
            elif draw < 0.6:
                key = rng.choice(list(models))
                del models[key]
                state.forget(key)
            else:
                expected = [e.key for e in policy.order(list(models.values()))]
                evict = rng.randrange(0, 4)
                seen: list[str] = []
                victims = state.victims()
                for key in victims:
                    seen.append(key)
                    if len(seen) <= evict:
                        state.evicted(key)
                        del models[key]
                    if len(seen) >= evict + 2:
                        break
                victims.close()
                assert seen == expected[: len(seen)], trial
                assert len(state) == len(models)
