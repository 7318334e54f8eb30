"""Many processes on one root: pins, single fill, leadership, merged counts, kill -9."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache

from .helpers import disk_total, finish, kill, lines, spawn, wait_for
from .workers import check_model, write_model


def quiet_config(evict_above: int = 10**9, **kwargs: object) -> CacheManagerConfig:
    return CacheManagerConfig(evict_above=evict_above, interval=3600, **kwargs)  # type: ignore[arg-type]


# -- the stress run ---------------------------------------------------------------------


def run_stress(tmp_path: Path, processes: int, ops: int) -> None:
    root, log = tmp_path / "cache", tmp_path / "events.log"
    budget = 300_000
    args = {
        "root": str(root),
        "log": str(log),
        "budget": budget,
        "interval": 0.05,
        "ops": ops,
        "keys": 40,
        "small": 5_000,
        "large": 30_000,
    }
    procs = [spawn("stress", seed=n, **args) for n in range(processes)]
    results = [json.loads(finish(p, timeout=600)) for p in procs]

    problems = [p for r in results for p in r["problems"]]
    assert problems == []
    assert sum(r["fills"] + r["reads"] for r in results) == processes * ops
    events = lines(log)
    assert [e for e in events if e.startswith("error")] == []
    fills = Counter(e.split()[1] for e in events if e.startswith("fill "))
    evictions = Counter(e.split()[1] for e in events if e.startswith("evict "))
    assert sum(evictions.values()) > 0, "the budget should force evictions"
    for key, count in fills.items():  # one fill per key per residency
        assert count <= evictions[key] + 1, (key, count, evictions[key])

    # One leader at a time: leadership intervals never overlap.
    changes = sorted(
        (float(t), int(flag), pid)
        for _, pid, flag, t in (e.split() for e in events if e.startswith("leader "))
    )
    leaders: set[str] = set()
    for _, flag, pid in changes:
        if flag:
            assert not leaders, f"{pid} led while {leaders} did"
            leaders.add(pid)
        else:
            leaders.discard(pid)

    with FileCache(root=root, config=CacheManagerConfig(evict_above=budget, interval=3600)) as c:
        wait_for(lambda: c.manager.cycles >= 1)  # the cycle at start is done
        snapshot = c.manager.run_once()
        assert snapshot is not None
        assert snapshot.total_size <= budget
        assert c.verify().ok
        assert c.total_size == disk_total(root)
        for entry in c.entries():
            assert check_model(c.storage.path(entry.key)) is None


def test_many_processes_stress(tmp_path: Path) -> None:
    run_stress(tmp_path, processes=6, ops=1000)


@pytest.mark.stress
def test_many_processes_stress_long(tmp_path: Path) -> None:
    run_stress(tmp_path, processes=8, ops=4000)


# -- pins -------------------------------------------------------------------------------


def test_a_model_open_in_another_process_is_not_evicted(tmp_path: Path) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    with FileCache(
        root=root, config=quiet_config(evict_above=1, evict_to=0, prompt_eviction=False)
    ) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # the start cycle must not race the fills
        for key in ("held", "free"):
            with cache.model(key) as model:
                write_model(model.path, key, 1000)
        holder = spawn("hold", root=str(root), key="held", ready=str(ready))
        try:
            wait_for(lambda: len(lines(ready)) == 1)
            assert cache.evict() == ["free"]
            assert check_model(cache.storage.path("held")) is None
        finally:
            kill(holder)  # the kernel drops a dead process's pins
        assert cache.evict() == ["held"]


# -- single fill ------------------------------------------------------------------------


def test_one_process_fills_while_the_others_wait(tmp_path: Path) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    with FileCache(root=root, config=quiet_config()):
        pass  # create the root first, so no worker sweeps another's staging area
    procs = [
        spawn("fill_slowly", root=str(root), key="m", ready=str(ready), seconds=0.5)
        for _ in range(4)
    ]
    for proc in procs:
        finish(proc)
    assert sorted(line.split()[1] for line in lines(ready)) == ["0", "0", "0", "1"]
    assert check_model(str(root / "m")) is None


@pytest.mark.parametrize("how", ["killed", "raises"])
def test_a_waiter_takes_over_a_failed_fill(tmp_path: Path, how: str) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    with FileCache(root=root, config=quiet_config()):
        pass
    first = spawn(
        "fill_slowly",
        root=str(root),
        key="m",
        ready=str(ready),
        seconds=60 if how == "killed" else 0.5,
        fail=how == "raises",
    )
    wait_for(lambda: len(lines(ready)) == 1)
    second = spawn("fill_slowly", root=str(root), key="m", ready=str(ready), seconds=0.1)
    if how == "killed":
        time.sleep(0.3)  # let the second process queue behind the first one's lock
        kill(first)
    else:
        first.communicate(timeout=60)
        assert first.returncode != 0
    finish(second)
    assert [line.split()[1] for line in lines(ready)] == ["1", "1"]
    assert check_model(str(root / "m")) is None
    with FileCache(root=root, config=quiet_config()) as cache:
        report = cache.verify()
        assert report.ok, report.problems
        assert cache.total_size == disk_total(root)


# -- leadership and merged accesses -----------------------------------------------------


def test_another_process_takes_over_when_the_leader_is_killed(tmp_path: Path) -> None:
    root, ready, log = tmp_path / "cache", tmp_path / "ready", tmp_path / "events.log"
    args = {"root": str(root), "ready": str(ready), "log": str(log), "interval": 0.1}
    first = spawn("lead", **args)
    second = None
    try:
        wait_for(lambda: any(e.endswith(" 1 ") or " 1 " in e for e in lines(log)))
        second = spawn("lead", **args)
        wait_for(lambda: len(lines(ready)) == 2)
        leaders = [e.split()[1] for e in lines(log) if e.split()[2] == "1"]
        assert leaders == [str(first.pid)]  # the second one waits
        kill(first)
        wait_for(lambda: str(second.pid) in [e.split()[1] for e in lines(log)])
        assert lines(log)[-1].split()[1:3] == [str(second.pid), "1"]
    finally:
        kill(first)
        if second is not None:
            kill(second)


def test_access_counts_from_all_processes_are_merged(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    procs = [spawn("touch", root=str(root), key="m", times=50, interval=0.01) for _ in range(4)]
    for proc in procs:
        finish(proc)
    with FileCache(root=root, config=quiet_config()) as cache:
        (entry,) = cache.entries()
    assert entry.access_count == 200


# -- kill -9 at any point ---------------------------------------------------------------


def run_chaos(tmp_path: Path, iterations: int) -> None:
    root = tmp_path / "cache"
    bad = tmp_path / "bad"
    rng = random.Random(7)
    with FileCache(root=root, config=quiet_config()):
        pass
    for iteration in range(iterations):
        ready = tmp_path / f"ready-{iteration}"
        procs = [
            spawn(
                "chaos",
                root=str(root),
                seed=iteration * 10 + n,
                budget=200_000,
                keys=20,
                ready=str(ready),
                bad=str(bad),
            )
            for n in range(3)
        ]
        wait_for(lambda ready=ready: len(lines(ready)) == 3)
        time.sleep(rng.uniform(0.02, 0.4))
        for proc in procs:
            kill(proc)

        # Recovery: a new cache reclaims leftovers; the check finds nothing after repair.
        with FileCache(root=root, config=quiet_config()) as cache:
            cache.verify(repair=True)
            report = cache.verify()
            assert report.ok, report.problems
            assert os.listdir(root / ".filecache" / "staging") == []
            assert os.listdir(root / ".filecache" / "trash") == []
            for entry in report.snapshot.entries:
                problem = check_model(cache.storage.path(entry.key))
                assert problem is None, (entry.key, problem)
            assert report.snapshot.total_size == disk_total(root)
    assert lines(bad) == []


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    # Six rounds of three killed processes, each with its recovery checked; the long run
    # below (stress marker) kills at 300 points.
    run_chaos(tmp_path, iterations=6)


@pytest.mark.stress
def test_kill_9_at_random_points_long(tmp_path: Path) -> None:
    run_chaos(tmp_path, iterations=300)
