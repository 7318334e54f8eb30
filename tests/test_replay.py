"""The replay reproduces libcachesim in exact mode, and measures what the issue asks.

The shared traces live next to the repository (``../shared/traces``); the tests that need
them skip with a message where they are absent. Exact reproduction is checked on cuts of
both traces; the full grid runs in ``benchmarks/`` (``python -m benchmarks --only replay``).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, GdsfPolicy, LruPolicy
from vcti.filecache.observers import TraceObserver
from vcti.filecache.replay import (
    POLICY_NAMES,
    ReplaySettings,
    Trace,
    expand_limit,
    parse_limit,
    read_trace,
    replay,
    sample_trace,
    simulate,
)

from .helpers import untraced

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"
WEB = TRACES / "adaptsize_web.csv"
BLOCK = TRACES / "cloudphysics_io.csv"
COSTS = TRACES / "synthetic_costs.csv"

#: Requests of each cut: enough to fill and churn every size, seconds to replay.
CUT = 20_000

#: Our name -> libcachesim's class.
REFERENCE = {"lru": "LRU", "lfu": "LFU", "gdsf": "GDSF", "sieve": "Sieve", "largest": "Size"}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the shared trace {path.name} is not at {path.parent.resolve()}")
    return path


def cut(path: Path, out: Path, requests: int) -> Path:
    with open(path) as source, open(out, "w") as target:
        target.writelines(itertools.islice(source, requests + 1))
    return out


def libcachesim_misses(name: str, trace, capacity: int) -> tuple[int, int]:
    libcachesim = pytest.importorskip("libcachesim")
    cache = getattr(libcachesim, name)(capacity)
    request = libcachesim.Request()
    misses = miss_bytes = 0
    for key, size in zip(trace.keys, trace.sizes, strict=True):
        request.obj_id = int(key)
        request.obj_size = size
        if not cache.get(request):
            misses += 1
            miss_bytes += size
    return misses, miss_bytes


@pytest.fixture(scope="module")
def cuts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cuts")
    return {
        "web": cut(need(WEB), folder / "web.csv", CUT),
        "block": cut(need(BLOCK), folder / "block.csv", CUT),
    }


@pytest.mark.parametrize("trace_name", ["web", "block"])
@pytest.mark.parametrize("policy", list(REFERENCE))
def test_exact_mode_reproduces_libcachesim(cuts, trace_name: str, policy: str) -> None:
    trace = read_trace(cuts[trace_name])
    assert trace.requests == CUT
    for share in ("1%", "5%", "10%", "25%"):
        capacity = parse_limit(share, trace.unique_bytes)
        ours = simulate(trace, policy, capacity, exact=True)
        theirs = libcachesim_misses(REFERENCE[policy], trace, capacity)
        assert (ours.misses, ours.miss_bytes) == theirs, (share, capacity)
        assert ours.peak_overshoot_bytes == 0


def test_cost_aware_misses_the_fewest_recompute_seconds() -> None:
    # The whole trace through every policy: the exact-mode tests above cover this code on
    # cuts, and under the coverage tracer the full replay would take three times as long.
    with untraced():
        records = replay(need(COSTS), limits=["5%", "10%", "25%"], exact=True)
    (record,) = records
    assert record["requests"] == 102_700
    by_limit: dict[int, dict[str, float]] = {}
    for result in record["results"]:
        by_limit.setdefault(result["limit_bytes"], {})[result["policy"]] = result["cost_miss_ratio"]
    assert len(by_limit) == 3
    for limit, ratios in by_limit.items():
        assert set(ratios) == set(POLICY_NAMES)
        best = min(ratios, key=ratios.__getitem__)
        assert best == "cost-aware", (limit, ratios)
        # The figure: about 40-50% fewer recompute seconds missed than LRU.
        assert ratios["cost-aware"] < 0.75 * ratios["lru"], (limit, ratios)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_exact_mode_conventions(tmp_path: Path) -> None:
    trace = read_trace(
        write(
            tmp_path / "t.csv",
            "time,key,size\n1,a,40\n2,b,40\n3,huge,101\n4,a,40\n5,c,40\n6,b,40\n7,a,40\n",
        )
    )
    result = simulate(trace, "lru", 100, exact=True)
    # a, b miss; huge misses and is never admitted; a hits; c evicts b (LRU); b misses,
    # evicting a; a misses.
    assert (result.misses, result.miss_bytes) == (6, 40 * 5 + 101)
    assert result.object_miss_ratio == pytest.approx(6 / 7)
    assert result.byte_miss_ratio == pytest.approx((40 * 5 + 101) / (40 * 6 + 101))
    assert result.cost_miss_ratio is None


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_exact_mode_admits_an_object_exactly_the_size_of_the_cache(
    tmp_path: Path, policy: str
) -> None:
    # libCacheSim admits it (only a larger one is refused), and so does the cache.
    trace = read_trace(write(tmp_path / "t.csv", "time,key,size\n1,a,100\n2,a,100\n3,b,101\n"))
    result = simulate(trace, policy, 100, exact=True)
    assert (result.misses, result.miss_bytes) == (2, 201)  # a hits the second time


def test_deployed_mode_evicts_at_cycles_and_reports_the_overshoot(tmp_path: Path) -> None:
    trace = read_trace(
        write(
            tmp_path / "t.csv",
            "time,key,size\n0,a,60\n10,b,60\n20,c,60\n70,a,60\n80,d,60\n200,c,60\n",
        )
    )
    result = simulate(
        trace, "lru", 100, settings=ReplaySettings(interval=60, evict_to=0.5, prompt_eviction=False)
    )
    # Until the cycle at 70 the cache holds a, b, c (180: 80 over). That cycle evicts the
    # least recent down to 50: a, b, c all go, so a misses again; d joins; at 200 the
    # cycle evicts a and d (120 > 100), and c misses.
    assert result.peak_overshoot_bytes == 80
    assert result.misses == 6
    exact = simulate(trace, "lru", 100, exact=True)
    assert exact.peak_overshoot_bytes == 0


def test_prompt_eviction_evicts_when_a_fill_crosses_the_limit(tmp_path: Path) -> None:
    trace = read_trace(
        write(
            tmp_path / "t.csv",
            "time,key,size\n0,a,60\n10,b,60\n20,a,60\n30,c,60\n40,b,60\n50,a,60\n",
        )
    )
    # b's fill takes the total to 120: the cycle it calls evicts a (least recent) at once.
    # a misses and evicts b; c evicts a; b misses and evicts c; a misses: every request.
    prompt = simulate(trace, "lru", 100)
    assert (prompt.misses, prompt.peak_overshoot_bytes) == (6, 20)
    assert prompt.misses == simulate(trace, "lru", 100, exact=True).misses
    # Evicting down to half the limit frees the same here (one model of 60 is over 50).
    assert simulate(trace, "lru", 100, evict_to=0.5).misses == 6
    # Without it nothing is evicted before the first cycle at 60: all fit, a and b hit.
    late = simulate(trace, "lru", 100, settings=ReplaySettings(prompt_eviction=False))
    assert (late.misses, late.peak_overshoot_bytes) == (3, 80)
    assert "spans 50 s, less than one cycle (60 s)" in " ".join(
        replay(
            tmp_path / "t.csv",
            policies=["lru"],
            limits=[100],
            settings=ReplaySettings(prompt_eviction=False),
        )[0]["warnings"]
    )
    # The cycle that a fill calls for may come later: b's at 10 runs at 25, after a's hit.
    delayed = simulate(trace, "lru", 100, settings=ReplaySettings(prompt_delay=15))
    assert delayed.misses == 5


def test_max_age_and_min_free(tmp_path: Path) -> None:
    trace = read_trace(
        write(tmp_path / "t.csv", "time,key,size\n0,a,10\n5,b,10\n70,c,10\n130,a,10\n140,b,10\n")
    )
    assert simulate(trace, "lru", 100).misses == 3
    # With max_age 60 the cycles at 60 and 120 expire a (idle 60+) and b: both miss again.
    aged = simulate(trace, "lru", 100, settings=ReplaySettings(max_age=60))
    assert aged.misses == 5
    # A disk of 35 bytes with 20 to keep free holds 15: every fill past one evicts.
    floor = simulate(trace, "lru", 100, settings=ReplaySettings(min_free=20, disk_size=35))
    assert floor.misses == 5
    assert (
        simulate(trace, "lru", 100, settings=ReplaySettings(min_free=0.5, disk_size=50)).misses == 5
    )


def test_warnings_for_results_that_cannot_mean_much(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "time,key,size\n0,a,60\n1,b,60\n2,c,300\n")
    (record,) = replay(
        path, policies=["lru"], limits=[100], settings=ReplaySettings(prompt_eviction=False)
    )
    assert record["warnings"] == [
        "the trace spans 2 s, less than one cycle (60 s): no background cycle ran, so "
        "nothing was evicted"
    ]
    (result,) = record["results"]
    assert result["warnings"] == [
        "the limit (100 B) is smaller than the largest object (300 B)",
        "the cache went 320 B over its limit of 100 B: the disk must hold more than twice "
        "the limit",
    ]
    (record,) = replay(path, policies=["lru"], limits=[1000])
    assert record["warnings"] == []
    assert record["results"][0]["warnings"] == []


def test_costs_count_each_request_at_its_keys_first_known_cost(tmp_path: Path) -> None:
    trace = read_trace(
        write(
            tmp_path / "t.csv",
            "time,key,size,cost,hit\n1,a,10,,0\n2,a,10,4.0,1\n3,b,10,1.0,0\n4,b,10,9,1\n"
            "5,c,10,,0\n",
        )
    )
    assert trace.first_cost == {"a": 4.0, "b": 1.0}
    result = simulate(trace, "lru", 1000, exact=True)
    # misses: a (4), b (1), c (no cost); all requests: 4 + 4 + 1 + 1 + 0.
    assert result.cost_miss_ratio == pytest.approx(5 / 10)


def test_a_policy_object_and_a_trace_with_empty_sizes(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path / "t.csv", "time,key,size\n1,a,\n2,a,30\n3,b,30\n4,a,\n"))
    assert trace.sizes == [30, 30, 30, 30]
    assert trace.unique_bytes == 60
    result = simulate(trace, LruPolicy(), 40, exact=True)
    assert result.policy == "lru"
    assert result.misses == 3


def test_replay_records_and_concat(tmp_path: Path) -> None:
    one = write(tmp_path / "one.csv", "time,key,size\n1,a,10\n2,b,10\n")
    two = write(tmp_path / "two.csv", "time,key,size,cost\n3,a,10,2\n4,c,10,1\n")
    records = replay([one, two], policies=["lru", GdsfPolicy()], limits=["50%", 15])
    assert [r["trace"] for r in records] == [str(one), str(two)]
    assert [r["requests"] for r in records] == [2, 2]
    first = records[0]["results"]
    assert [(r["policy"], r["limit_bytes"]) for r in first] == [
        ("lru", 10),
        ("gdsf", 10),
        ("lru", 15),
        ("gdsf", 15),
    ]
    assert set(first[0]) == {
        "policy",
        "limit_bytes",
        "misses",
        "miss_bytes",
        "object_miss_ratio",
        "byte_miss_ratio",
        "cost_miss_ratio",
        "peak_overshoot_bytes",
        "warnings",
    }
    (joined,) = replay([one, two], policies=["lru"], limits=["100%"], concat=True, exact=True)
    assert joined["trace"] == f"{one}+{two}"
    assert joined["requests"] == 4
    assert joined["unique_bytes"] == 30
    assert joined["results"][0]["misses"] == 3  # a hits the second time
    # Each request costs its key's first known cost: a 2, b none, a 2, c 1; a, b, c missed.
    assert joined["results"][0]["cost_miss_ratio"] == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policies": ["fifo"]}, "unknown policy 'fifo'"),
        ({"limits": ["ten"]}, "invalid size"),
        ({"limits": ["-5%"]}, "must not be negative"),
        ({"interval": 0}, "interval must be positive"),
        ({"evict_to": 1.5}, "evict_to must be between 0 and 1"),
    ],
)
def test_replay_refuses_bad_arguments(tmp_path: Path, kwargs, message: str) -> None:
    trace = write(tmp_path / "t.csv", "time,key,size\n1,a,10\n")
    with pytest.raises(ValueError, match=message):
        replay(trace, **kwargs)


def test_deployed_defaults_are_the_librarys() -> None:
    config = CacheManagerConfig(evict_above=1000)
    assert (
        ReplaySettings() == ReplaySettings.library_defaults() == ReplaySettings.from_config(config)
    )
    tuned = CacheManagerConfig(
        evict_above=1000, evict_to=800, interval=5, max_age=60, prompt_eviction=False
    )
    assert ReplaySettings.from_config(tuned) == ReplaySettings(
        interval=5, evict_to=0.8, prompt_eviction=False, max_age=60
    )


def _fill(cache: FileCache, key: str, size: int) -> None:
    with cache.model(key) as model:
        if model.new:
            Path(model.path, "data.bin").write_bytes(b"x" * size)


def test_deployed_mode_predicts_a_recorded_run_of_the_cache(tmp_path: Path) -> None:
    # A real cache (its background manager, LRU, the library's eviction) under a skewed
    # load, recorded by TraceObserver: the deployed-mode replay of the recording, with the
    # cache's own settings, must predict the miss ratio the run measured. The load is
    # paced like a server's (8 ms between lookups): the replay takes an eviction to be done
    # before the next lookup, and a burst faster than the manager's cycle (tens of ms here)
    # leaves the real cache above its limit for longer (it misses less than predicted).
    rng = random.Random(24)
    sizes = {f"m{i:03d}": rng.randrange(4, 64) * 1024 for i in range(150)}
    keys = list(sizes)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(keys))]
    limit = sum(sizes.values()) // 4
    trace_path = tmp_path / "run.csv"
    config = CacheManagerConfig(evict_above=limit, observer=TraceObserver(trace_path))
    with FileCache(config, root=tmp_path / "root") as cache:
        for key in rng.choices(keys, weights, k=1500):
            _fill(cache, key, sizes[key])
            time.sleep(0.008)
    trace = read_trace(trace_path)
    assert trace.requests == 1500
    with open(trace_path, newline="") as stream:
        measured = sum(row["hit"] == "0" for row in csv.DictReader(stream)) / trace.requests
    settings = ReplaySettings.from_config(config)
    predicted = simulate(trace, "lru", limit, settings=settings)
    assert abs(predicted.object_miss_ratio - measured) <= 0.01, (predicted, measured)
    assert 0.2 < measured < 0.9  # the limit matters: neither everything nor nothing fits
    # Without prompt eviction the same run is predicted quite differently: the test can tell.
    cycles_only = simulate(
        trace, "lru", limit, settings=dataclasses.replace(settings, prompt_eviction=False)
    )
    assert abs(cycles_only.object_miss_ratio - measured) > 0.05


def test_a_range_of_limits_is_log_spaced() -> None:
    assert expand_limit("1K..1M:4", 0) == [1024, 10321, 104032, 1048576]
    assert expand_limit("10%..40%:3", 1000) == [100, 200, 400]
    assert len(expand_limit("1%..50%", 10**9)) == 16
    assert expand_limit("5%..5%:8", 1000) == [50]
    for bad, message in [
        ("1M..1K", "the low end is above the high end"),
        ("1K..1M:1", "at least 2 sizes"),
        ("1K..1M:x", "the count after ':' is not a number"),
        ("1K..lots", "invalid size"),
    ]:
        with pytest.raises(ValueError, match=message):
            expand_limit(bad, 1000)


def test_a_sample_keeps_every_request_of_the_keys_it_keeps() -> None:
    trace = Trace("t")
    for i in range(20_000):
        trace.times.append(float(i))
        trace.keys.append(f"k{i % 5000}")
        trace.sizes.append(100 + i % 5000)
        trace.costs.append(None)
    trace.summarize()
    sample = sample_trace(trace, 0.1)
    assert sample_trace(trace, 1.0) is trace
    kept = set(sample.keys)
    assert 400 < len(kept) < 600  # about a tenth of the 5,000 keys
    assert sample.requests == sum(1 for key in trace.keys if key in kept)
    assert sample_trace(trace, 0.1).keys == sample.keys  # the same keys every time
    with pytest.raises(ValueError, match="sampling rate"):
        sample_trace(trace, 0)


def test_sampled_replay_estimates_the_full_curve(tmp_path: Path) -> None:
    rng = random.Random(3)
    lines = ["time,key,size"]
    for i in range(60_000):
        key = int(20_000 * rng.random() ** 3)  # skewed, no key above 1% of the requests
        lines.append(f"{i},{key},{1000 + key % 97}")
    path = write(tmp_path / "zipf.csv", "\n".join(lines) + "\n")
    with untraced():
        (full,) = replay(path, policies=["lru"], limits=["2%..40%:5"], exact=True)
        (sampled,) = replay(path, policies=["lru"], limits=["2%..40%:5"], exact=True, sample=0.1)
    assert sampled["sample"]["rate"] == 0.1
    assert 0.05 * 60_000 < sampled["sample"]["requests"] < 0.2 * 60_000
    assert [r["limit_bytes"] for r in sampled["results"]] == [
        r["limit_bytes"] for r in full["results"]
    ]
    for ours, whole in zip(sampled["results"], full["results"], strict=True):
        assert ours["object_miss_ratio"] == pytest.approx(whole["object_miss_ratio"], abs=0.03)
        assert ours["misses"] == round(ours["object_miss_ratio"] * 60_000)
        # Some 2,000 keys of 20,000: the record says the estimate is rough.
        assert any("keys (fewer than 5,000)" in text for text in ours["warnings"])
    assert not any("keys (fewer than" in text for r in full["results"] for text in r["warnings"])


def _weighted(requests: list[tuple[str, int]], weights: dict[str, float]) -> Trace:
    trace = Trace("weighted", weights=weights)
    for i, (key, size) in enumerate(requests):
        trace.times.append(float(i))
        trace.keys.append(key)
        trace.sizes.append(size)
        trace.costs.append(None)
    return trace.summarize()


def test_a_weighted_key_counts_and_takes_room_as_the_keys_it_stands_for() -> None:
    trace = _weighted([("a", 10), ("b", 10), ("a", 10), ("b", 10)], {"a": 2.0, "b": 3.0})
    assert (trace.total_requests, trace.total_bytes) == (10, 100)
    # Room for both (20 + 30): two misses, counted 2 and 3 times.
    both = simulate(trace, "lru", 50, exact=True)
    assert (both.misses, both.miss_bytes, both.object_miss_ratio) == (5, 50, 0.5)
    # Room for one: each evicts the other, though their true sizes (20) would fit in 40.
    one = simulate(trace, "lru", 40, exact=True)
    assert (one.misses, one.object_miss_ratio, one.byte_miss_ratio) == (10, 1.0, 1.0)
    assert simulate(trace, "lru", 40).object_miss_ratio == 1.0  # the deployed mode alike
    # b's room (30) is more than the whole cache: never admitted, though its size fits;
    # a stays, and hits.
    assert simulate(trace, "lru", 25, exact=True).misses == 2 + 3 + 3


def test_policies_see_the_true_sizes_of_weighted_keys() -> None:
    seen: dict[str, int] = {}

    class Recording:
        name = "recording"

        def order(self, entries: list[Any]) -> list[Any]:
            seen.update((e.key, e.size) for e in entries)
            return sorted(entries, key=lambda e: e.last_access)

    requests = [("a", 10), ("b", 30), ("c", 10), ("a", 10), ("d", 10)]
    trace = _weighted(requests, {"a": 4.0, "b": 1.0, "c": 4.0, "d": 4.0})
    result = simulate(trace, Recording(), 80, exact=True)
    assert seen == {"a": 10, "b": 30, "c": 10}
    # Rooms 40, 30, 40, 40: b and c evict a (oldest first); a evicts b and c; d evicts a.
    assert result.misses == 4 + 1 + 4 + 4 + 4
    # A built-in policy (its own walk) agrees with the same order given as an object.
    assert simulate(trace, "lru", 80, exact=True) == dataclasses.replace(result, policy="lru")


def test_a_size_aware_sample_keeps_larger_keys_more_often_and_weights_them() -> None:
    rng = random.Random(11)
    trace = Trace("t")
    sizes = {f"k{i}": int(1000 * rng.paretovariate(1.1)) for i in range(20_000)}
    for i in range(60_000):
        key = f"k{i % 20_000}"
        trace.times.append(float(i))
        trace.keys.append(key)
        trace.sizes.append(sizes[key])
        trace.costs.append(None)
    trace.summarize()
    mean = trace.unique_bytes / len(sizes)
    sample = sample_trace(trace, 0.05, by="size")
    kept = set(sample.keys)
    assert sample.weights.keys() == kept
    assert 0.9 * 1000 < len(kept) < 1.1 * 1000  # a twentieth of the keys, on average
    # Chances grow with size, in proportion above the mean: p = min(1, λ max(1, s/mean)).
    chance = {key: 1 / weight for key, weight in sample.weights.items()}
    small = {round(p, 12) for key, p in chance.items() if sizes[key] <= mean}
    assert len(small) == 1
    (scale,) = small
    for key, p in chance.items():
        assert p == pytest.approx(min(1.0, scale * max(1.0, sizes[key] / mean)))
    largest = sorted(sizes, key=sizes.__getitem__)[-20:]
    assert all(chance.get(key, 0) == 1.0 or key not in kept for key in largest)
    assert set(largest) <= kept  # the largest are kept for sure
    # The weighted totals estimate the trace's (Horvitz-Thompson): within a few percent.
    assert sample.total_requests == pytest.approx(trace.requests, rel=0.1)
    assert sample.total_bytes == pytest.approx(trace.total_bytes, rel=0.1)
    uniform = sample_trace(trace, 0.05, by="keys")
    assert uniform.weights == {}
    assert sample_trace(trace, 0.05, by="size").keys == sample.keys  # stable
    with pytest.raises(ValueError, match="sample by 'size' or 'keys'"):
        sample_trace(trace, 0.05, by="bytes")
    assert sample_trace(Trace("empty").summarize(), 0.5, by="size").requests == 0


def test_size_aware_sampling_estimates_the_byte_miss_ratio(tmp_path: Path) -> None:
    # A few large objects hold much of the bytes (sizes Pareto, alpha 1.05): whether a
    # uniform sample of 10% of the keys has them decides its byte miss ratio.
    rng = random.Random(7)
    sizes = [int(4096 * rng.paretovariate(1.05)) for _ in range(20_000)]
    lines = ["time,key,size"]
    for i in range(60_000):
        key = int(20_000 * rng.random() ** 2.5)
        lines.append(f"{i},{key},{sizes[key]}")
    path = write(tmp_path / "heavy.csv", "\n".join(lines) + "\n")
    curve = {"policies": ["lru", "gdsf"], "limits": ["2%..40%:5"], "exact": True}
    with untraced():
        (full,) = replay(path, **curve)  # type: ignore[arg-type]
        (by_size,) = replay(path, **curve, sample=0.1)  # type: ignore[arg-type]
        (by_keys,) = replay(path, **curve, sample=0.1, sample_by="keys")  # type: ignore[arg-type]
    assert (by_size["sample"]["by"], by_keys["sample"]["by"]) == ("size", "keys")
    assert 0.05 * 60_000 < by_size["sample"]["requests"] < 0.2 * 60_000
    for ours, whole in zip(by_size["results"], full["results"], strict=True):
        assert ours["limit_bytes"] == whole["limit_bytes"]
        # Some 2,000 keys: SHARDS's own sampling error is of a few points.
        assert ours["byte_miss_ratio"] == pytest.approx(whole["byte_miss_ratio"], abs=0.06)
        assert ours["object_miss_ratio"] == pytest.approx(whole["object_miss_ratio"], abs=0.06)
    # The uniform sample of as many keys is off by tens of points: the test can tell.
    worst = max(
        abs(ours["byte_miss_ratio"] - whole["byte_miss_ratio"])
        for ours, whole in zip(by_keys["results"], full["results"], strict=True)
    )
    assert worst > 0.2


def test_parallel_grid_equals_the_serial_one_and_reports_progress(tmp_path: Path) -> None:
    rng = random.Random(5)
    lines = ["time,key,size,cost"]
    for i in range(40_000):
        key = int(rng.paretovariate(0.8)) % 3000
        lines.append(f"{i},{key},{100 + key},{key % 7}")
    path = write(tmp_path / "t.csv", "\n".join(lines) + "\n")
    seen: list[tuple[str, int, int]] = []
    with untraced():
        serial = replay(path, limits=["5%", "20%"])
        parallel = replay(
            path, limits=["5%", "20%"], jobs=2, progress=lambda *step: seen.append(step)
        )
    assert parallel == serial
    assert len(seen) == 2 * len(POLICY_NAMES)
    assert [done for _, done, _ in seen] == list(range(1, len(seen) + 1))
    assert {(name, total) for name, _, total in seen} == {(str(path), len(seen))}


def test_auto_sampling_keeps_about_8192_keys(tmp_path: Path) -> None:
    lines = ["time,key,size"]
    for i in range(40_000):
        lines.append(f"{i},k{i % 20_000},{1000 + i % 7}")
    path = write(tmp_path / "many.csv", "\n".join(lines) + "\n")
    with untraced():
        (record,) = replay(path, policies=["lru"], limits=["10%"], sample="auto")
    assert record["sample"]["rate"] == pytest.approx(8192 / 20_000)
    # Each kept key keeps both its requests: about 8,192 keys, twice as many requests.
    assert 0.9 * 2 * 8192 < record["sample"]["requests"] < 1.1 * 2 * 8192
    # A trace with fewer keys than that is replayed whole.
    small = write(tmp_path / "few.csv", "time,key,size\n0,a,10\n1,b,10\n2,a,10\n")
    (whole,) = replay(small, policies=["lru"], limits=["50%"], sample="auto")
    assert "sample" not in whole
    assert whole["results"] == replay(small, policies=["lru"], limits=["50%"])[0]["results"]
    for bad in ("some", 0, 1.5):
        with pytest.raises(ValueError, match="sample must be 'auto' or in"):
            replay(small, sample=bad)
    with pytest.raises(ValueError, match="sample_by must be 'size' or 'keys': 'bytes'"):
        replay(small, sample=0.5, sample_by="bytes")
