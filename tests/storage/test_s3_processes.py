"""Several processes ("hosts", each with its own client and host id) on one bucket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache

from ..helpers import REPO, finish, kill, lines, wait_for
from .conftest import S3Env

TTL = 2.0  # the live leader must renew in time even on a loaded machine


def spawn(mode: str, s3: S3Env, host: str, **args: Any) -> subprocess.Popen[str]:
    args.update(url=s3.url, bucket=s3.bucket, host=host)
    args.setdefault("ttl", TTL)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.s3_workers", mode, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    output: dict[str, Any] = json.loads(finish(proc, timeout=60))
    return output


def test_another_host_takes_the_lead_when_the_leader_is_killed(s3: S3Env, tmp_path: Path) -> None:
    ready, log = tmp_path / "ready", tmp_path / "events.log"
    args = {"ready": str(ready), "log": str(log), "interval": 0.1}
    first = spawn("lead", s3, "host-a", **args)
    second = None
    try:
        wait_for(lambda: any(e.split()[2] == "1" for e in lines(log)))
        second = spawn("lead", s3, "host-b", **args)
        wait_for(lambda: len(lines(ready)) == 2)
        time.sleep(1.5 * TTL)  # the leader renews its lease: the second host keeps waiting
        leaders = [
            e.split()[1] for e in lines(log) if e.startswith("leader") and e.split()[2] == "1"
        ]
        assert leaders == [str(first.pid)]
        kill(first)
        killed = time.monotonic()
        wait_for(lambda: f"leader {second.pid} 1" in " ".join(lines(log)), timeout=10 * TTL + 20)
        took = time.monotonic() - killed
        # Not before the dead leader's last lease could have expired; within a few TTLs.
        assert TTL / 2 < took < 5 * TTL + 10
        assert [e for e in lines(log) if e.startswith("error")] == []
    finally:
        kill(first)
        if second is not None:
            kill(second)


def test_two_hosts_share_fills_pins_and_counts(s3: S3Env, tmp_path: Path) -> None:
    # A fill by one host is seen complete by the other.
    filled = result(spawn("fill", s3, "host-a", keys=["m/1", "m/2", "m/held"], size=5000))
    assert filled["new"] == {"m/1": True, "m/2": True, "m/held": True}
    assert result(spawn("read", s3, "host-b", keys=["m/1", "m/2", "m/held"])) == {"problems": []}

    # A model open on host A survives host B's eviction; the others go.
    ready = tmp_path / "ready"
    holder = spawn("hold", s3, "host-a", key="m/held", ready=str(ready))
    try:
        wait_for(lambda: len(lines(ready)) == 1)
        evicted = result(spawn("evict", s3, "host-b"))["evicted"]
        assert sorted(evicted) == ["m/1", "m/2"]
        assert s3.object_keys("cache/m/1/") == []
    finally:
        kill(holder)
    # A dead host cannot pin forever: its pin expires on the evictor's own clock.
    with FileCache(
        storage=s3.storage(lease_ttl=TTL, host_id="host-c"),
        config=CacheManagerConfig(evict_above=1, evict_to=0, interval=3600),
    ) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        wait_for(lambda: cache.evict() == ["m/held"], timeout=10 * TTL + 20)

    # Accesses from both hosts are merged into the one metadata object.
    touchers = [
        spawn("touch", s3, host, key="counted", times=40, interval=0.05, pause=0.005)
        for host in ("host-a", "host-b")
    ]
    for proc in touchers:
        finish(proc)
    with FileCache(
        storage=s3.storage(host_id="host-c"),
        config=CacheManagerConfig(evict_above=10**9, interval=3600),
    ) as cache:
        (entry,) = cache.entries()
    assert (entry.key, entry.access_count) == ("counted", 80)
