"""The real cache (not only the replay) with the new policies: fill times, state, restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from vcti.filecache import (
    CacheManagerConfig,
    CostAwarePolicy,
    FileCache,
    GdsfPolicy,
    LocalStorage,
    SievePolicy,
)

from ..helpers import REPO, wait_for


def fill(cache: FileCache, key: str, size: int, seconds: float = 0.0) -> None:
    with cache.model(key) as model:
        time.sleep(seconds)  # the extraction: its time is what the model is worth
        Path(model.path, "data.bin").write_bytes(b"x" * size)


def config(policy: object, **kwargs: object) -> CacheManagerConfig:
    return CacheManagerConfig(
        evict_above=10**9,
        interval=3600,
        policy=policy,  # type: ignore[arg-type]
        prompt_eviction=False,
        **kwargs,  # type: ignore[arg-type]
    )


def stored_clock(root: Path, name: str) -> float:
    """The GreedyDual clock ``L`` of the policy state the cache stored."""
    data = LocalStorage(root).read_state(name)
    _, _, state = data.partition(b"\n")
    return float(json.loads(state)["clock"])


def test_cost_aware_evicts_the_cheapest_per_byte_first(tmp_path: Path) -> None:
    with FileCache(config(CostAwarePolicy()), root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        fill(cache, "slow-small", 1000, seconds=0.3)  # 0.3 s for 1 kB: dear per byte
        fill(cache, "fast-small", 1000, seconds=0.02)  # a quick one, timed above the noise
        fill(cache, "slow-big", 4000, seconds=0.3)  # as slow, four times the bytes
        fill(cache, "fast-big", 4000, seconds=0.02)
        entries = {e.key: e for e in cache.entries()}
        assert entries["slow-small"].fill_seconds is not None
        assert entries["slow-small"].fill_seconds >= 0.3
        assert entries["fast-big"].fill_seconds is not None
        assert entries["fast-big"].fill_seconds < 0.3
        # All opened once: the cheapest to recompute per byte go first.
        assert cache.evict(evict_above=9000, evict_to=5000) == ["fast-big", "fast-small"]
        assert sorted(e.key for e in cache.entries()) == ["slow-big", "slow-small"]


def test_gdsf_and_sieve_drive_the_real_cache(tmp_path: Path) -> None:
    for policy, expected in ((GdsfPolicy(), ["big"]), (SievePolicy(), ["big"])):
        root = tmp_path / policy.name
        with FileCache(config(policy), root=root) as cache:
            wait_for(lambda cache=cache: cache.manager.cycles >= 1)
            fill(cache, "hot", 100)
            fill(cache, "big", 1000)
            for _ in range(3):
                with cache.model("hot"):
                    pass
            cache.manager.run_once()  # the state learns of the accesses
            assert cache.evict(evict_above=1000, evict_to=900) == expected


STAGE_TWO = """
import json, sys, time
from pathlib import Path
from vcti.filecache import CacheManagerConfig, CostAwarePolicy, FileCache

config = CacheManagerConfig(
    evict_above=10**9, interval=3600, policy=CostAwarePolicy(), prompt_eviction=False
)
with FileCache(config, root=sys.argv[1]) as cache:
    while not cache.manager.is_leader:
        time.sleep(0.01)
    with cache.model("cheap") as model:
        Path(model.path, "data.bin").write_bytes(b"x" * 1000)
    print(json.dumps(cache.evict(evict_above=1, evict_to=0)))
"""


def test_the_policy_state_survives_a_restart(tmp_path: Path) -> None:
    with FileCache(config(CostAwarePolicy()), root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        fill(cache, "dear", 1000, seconds=0.3)
        assert cache.evict(evict_above=1, evict_to=0) == ["dear"]
    before = stored_clock(tmp_path, "cost-aware")  # L: the priority of "dear"
    assert before > 0

    # Another process leads now: it reads L back. A cheap model evicted on top of it
    # raises L above the old value; from a fresh state it would leave L far below it.
    run = subprocess.run(
        [sys.executable, "-c", STAGE_TWO, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["cheap"]
    assert stored_clock(tmp_path, "cost-aware") > before
