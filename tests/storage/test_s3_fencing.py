"""Hosts that pause past their leases (SIGSTOP, then SIGCONT) on one bucket: fencing.

Each host is a process with its own boto3 client and host id (``tests/s3_workers.py``).
A paused host stops itself at the worst point it can (before a given request, or in
the middle of a fill), the others carry on, and then it resumes: whatever it does late
must harm nobody, and it must learn what it lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache
from vcti.filecache.storage.s3 import S3Storage

from ..helpers import kill, lines, wait_for
from .conftest import S3Env, every
from .test_s3_processes import TTL, result, spawn

META = b'{"access_count":1,"last_access":1,"created":1}'


def wait_stopped(proc: subprocess.Popen[str], paused: Path) -> None:
    """Wait until ``proc`` said it pauses and is stopped (state T)."""
    wait_for(lambda: bool(lines(paused)))
    wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "T")


def resume(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGCONT)


def storage(s3: S3Env, host: str = "host-test") -> S3Storage:
    made: S3Storage = s3.storage(lease_ttl=TTL, host_id=host)
    return made


def publish(s3: S3Env, key: str, files: dict[str, bytes]) -> str:
    """Publish ``key`` holding ``files`` as another host would; return its attempt's URI."""
    host = storage(s3, "host-seed")
    lock = host.lock_fill(key, timeout=10)
    staged = host.stage(key)
    for name, data in files.items():
        s3.put(staged, name, data)
    host.publish(key, staged, META)
    lock.release()
    return staged


def model_files(s3: S3Env, key: str) -> dict[str, bytes] | None:
    """What a reader on a fresh host finds in model ``key`` (None: no model)."""
    reader = storage(s3, "host-reader")
    pin = reader.pin(key)
    if pin is None:
        return None
    try:
        path = reader.path(key)
        _, _, base = path.removeprefix("s3://").partition("/")
        names = [n for n in s3.object_keys(base + "/") if "/.filecache/" not in n[len(base) :]]
        return {
            name[len(base) + 1 :]: s3.client.get_object(Bucket=s3.bucket, Key=name)["Body"].read()
            for name in names
        }
    finally:
        pin.release()
        reader.flush()


def parts(host: str, key: str, count: int = 3) -> dict[str, bytes]:
    """The files ``s3_workers.write_parts`` writes for ``host``."""
    return {f"part-{n}": f"{host} {key} {n}".encode() for n in range(count)}


def attempts(s3: S3Env, key: str) -> set[str]:
    """The attempt ids that have objects under ``key``."""
    inner = f"cache/{key}/.filecache/"
    return {k[len(inner) : len(inner) + 16] for k in s3.object_keys(inner)}


def test_a_paused_filler_writes_only_into_its_own_attempt(s3: S3Env, tmp_path: Path) -> None:
    # Host A fills "w" and pauses after its first file, past its lease; host B takes the
    # fill over and publishes; A resumes and writes its last files, then fails to publish.
    paused = tmp_path / "paused"
    slow = spawn("fill", s3, "host-a", keys=["w"], parts=3, pause_in_fill=True, paused=str(paused))
    try:
        wait_stopped(slow, paused)
        assert result(spawn("fill", s3, "host-b", keys=["w"], parts=3)) == {
            "new": {"w": True},
            "errors": {},
        }
        assert model_files(s3, "w") == parts("host-b", "w")
        resume(slow)
        late = result(slow)
    finally:
        kill(slow)
    assert model_files(s3, "w") == parts("host-b", "w")  # nothing of A's, before or after
    assert late["new"] == {"w": True}
    assert late["errors"]["w"].startswith("FileExistsError: ")  # B published first
    assert len(attempts(s3, "w")) == 1  # A deleted its own attempt when its fill failed


def test_a_paused_evictor_cannot_delete_a_model_filled_again(s3: S3Env, tmp_path: Path) -> None:
    # The evictor pauses after hiding "e" and before its batched DeleteObjects; another
    # host fills "e" again; the evictor resumes: its batch names only the old attempt.
    publish(s3, "e", parts("host-old", "e", 2))
    paused, log = tmp_path / "paused", tmp_path / "events.log"
    evictor = spawn(
        "evict", s3, "host-l", pause_at=["DeleteObjects", ""], paused=str(paused), log=str(log)
    )
    try:
        wait_stopped(evictor, paused)
        assert model_files(s3, "e") is None  # evicted for readers already
        assert result(spawn("fill", s3, "host-b", keys=["e"], parts=2)) == {
            "new": {"e": True},
            "errors": {},
        }
        resume(evictor)
        assert result(evictor) == {"evicted": ["e"]}
    finally:
        kill(evictor)
    assert model_files(s3, "e") == parts("host-b", "e", 2)
    assert [e for e in lines(log) if e.startswith("error")] == []


def test_a_model_evicted_while_held_keeps_its_files_through_a_refill(
    s3: S3Env, tmp_path: Path
) -> None:
    # The evictor pauses after finding no pin and before making the head vacant (a
    # conditional PUT: nothing fenced is a DeleteObject, whose condition some servers
    # ignore); a reader opens the model meanwhile and holds it; the evictor resumes and
    # hides the model; another host fills it again. The reader's files never change, and
    # go only after it closes.
    old = publish(s3, "h", parts("host-old", "h", 2))
    paused, ready, stop = tmp_path / "paused", tmp_path / "ready", tmp_path / "stop"
    evictor = spawn("evict", s3, "host-l", pause_at=["PutObject", "/head"], paused=str(paused))
    reader = None
    try:
        wait_stopped(evictor, paused)
        reader = spawn("watch", s3, "host-r", key="h", ready=str(ready), stop=str(stop))
        wait_for(lambda: bool(lines(ready)))
        resume(evictor)
        assert result(evictor) == {"evicted": ["h"]}
        assert result(spawn("fill", s3, "host-b", keys=["h"], parts=2)) == {
            "new": {"h": True},
            "errors": {},
        }
        assert model_files(s3, "h") == parts("host-b", "h", 2)
        time.sleep(TTL)  # the reader reads on, past a renewal of its pin
        stop.touch()
        held = result(reader)
    finally:
        kill(evictor)
        if reader is not None:
            kill(reader)
    assert held == {
        "files": {k: v.decode() for k, v in parts("host-old", "h", 2).items()},
        "changes": [],
        "error": None,
    }
    # Released, the old attempt is a leftover like any other: the next sweep deletes it.
    sweeper = storage(s3, "host-sweeper")
    old_attempt = old.rsplit("/", 1)[1]
    sweeper.open()
    wait_for(every(0.2, lambda: sweeper.sweep() >= 0 and old_attempt not in attempts(s3, "h")))
    assert model_files(s3, "h") == parts("host-b", "h", 2)


def test_nested_keys_filled_by_two_hosts_publish_only_one(s3: S3Env, tmp_path: Path) -> None:
    # At once: "n" and "n/b", each context open for a second.
    outer = spawn("fill", s3, "host-a", keys=["n"], parts=1, linger=1.0)
    inner = spawn("fill", s3, "host-b", keys=["n/b"], parts=1, linger=1.0)
    outcomes = {"n": result(outer), "n/b": result(inner)}
    published = sorted(storage(s3).iter_models())
    assert len(published) == 1, outcomes
    (winner,) = published
    (loser,) = {"n", "n/b"} - {winner}
    assert outcomes[winner] == {"new": {winner: True}, "errors": {}}
    assert outcomes[loser]["errors"][loser].startswith(("KeyValidationError", "FileExistsError"))

    # "p" pauses with its fill in progress; "p/q" waits for it, then finds its claim
    # expired and goes ahead; "p" resumes and cannot publish.
    paused = tmp_path / "paused"
    slow = spawn("fill", s3, "host-a", keys=["p"], parts=2, pause_in_fill=True, paused=str(paused))
    try:
        wait_stopped(slow, paused)
        assert result(spawn("fill", s3, "host-b", keys=["p/q"], parts=1)) == {
            "new": {"p/q": True},
            "errors": {},
        }
        resume(slow)
        late = result(slow)
    finally:
        kill(slow)
    assert "not publishing" in late["errors"]["p"]
    assert sorted(storage(s3).iter_models()) == [winner, "p/q"]
    assert storage(s3).verify(repair=False) == []


def test_a_holder_whose_pin_lapsed_is_told(s3: S3Env, tmp_path: Path) -> None:
    publish(s3, "p", parts("host-old", "p", 1))
    ready, stop, log = tmp_path / "ready", tmp_path / "stop", tmp_path / "events.log"
    holder = spawn("watch", s3, "host-h", key="p", ready=str(ready), stop=str(stop), log=str(log))
    try:
        wait_for(lambda: bool(lines(ready)))
        os.kill(holder.pid, signal.SIGSTOP)
        evictor = storage(s3, "host-e")
        # Its pin is seen unchanged for a TTL: the model is evicted and its files deleted.
        wait_for(every(0.2, lambda: evictor.remove("p")), timeout=10 * TTL + 20)
        evictor.flush()
        assert s3.object_keys("cache/p/") == []
        resume(holder)
        stop.touch()
        held = result(holder)
    finally:
        kill(holder)
    assert held["error"] == "PinLostError"
    errors = [e.split(maxsplit=3)[2:] for e in lines(log) if e.startswith("error")]
    assert [context for context, _ in errors] == ["pin"]
    assert errors[0][1].startswith("PinLostError(")


def test_a_leader_that_was_paused_announces_the_loss_once(s3: S3Env, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    args: dict[str, Any] = {"ready": str(tmp_path / "ready"), "log": str(log), "interval": 0.1}

    def events(proc: subprocess.Popen[str], what: str) -> list[str]:
        return [e for e in lines(log) if e.split()[:2] == [what, str(proc.pid)]]

    first = spawn("lead", s3, "host-1", **args)
    second = None
    try:
        wait_for(lambda: len(events(first, "leader")) == 1)
        os.kill(first.pid, signal.SIGSTOP)
        second = spawn("lead", s3, "host-2", **args)
        wait_for(lambda: len(events(second, "leader")) == 1, timeout=10 * TTL + 20)
        resume(first)
        wait_for(lambda: len(events(first, "leader")) == 2)
        time.sleep(2 * TTL)  # many cycles of the paused host, trying to lead again
        assert [e.split()[2] for e in events(first, "leader")] == ["1", "0"]
        assert events(first, "error") == []
        assert [e.split()[2] for e in events(second, "leader")] == ["1"]
        kill(second)  # the first takes the lead back at one of its next cycles
        wait_for(lambda: len(events(first, "leader")) == 3, timeout=10 * TTL + 20)
    finally:
        kill(first)
        if second is not None:
            kill(second)
    assert [e for e in lines(log) if e.startswith("error")] == []


def test_corrupt_objects_expire_and_verify_repairs_them(s3: S3Env, tmp_path: Path) -> None:
    claim = {"state": "filling", "attempt": "c" * 16, "holder": "h", "key": "c", "nonce": "n"}
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="cache/.filecache/models/c/head",
        Body=json.dumps({**claim, "ttl": 1e9}),
    )
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="cache/.filecache/leader",
        Body=b'{"holder":"h","key":"","nonce":"n","ttl":Infinity}',
    )
    # A fill waits for a fill lease with a huge TTL no longer than its own TTL; a host
    # becomes leader over a leader lease whose TTL is infinite.
    log = tmp_path / "events.log"
    leader = spawn("lead", s3, "host-l", ready=str(tmp_path / "ready"), log=str(log), interval=0.1)
    try:
        filled = result(spawn("fill", s3, "host-f", keys=["c"], parts=1, lock_timeout=10 * TTL))
        assert filled == {"new": {"c": True}, "errors": {}}
        wait_for(lambda: any(e.split()[2] == "1" for e in lines(log)), timeout=10 * TTL + 20)
    finally:
        kill(leader)
    s3.client.delete_object(Bucket=s3.bucket, Key="cache/.filecache/leader")

    # What verify reports and repair clears: a corrupt lease, a model whose data is gone,
    # objects outside the layout (not counted as fills in progress).
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="cache/.filecache/models/c2/head",
        Body=json.dumps({**claim, "key": "c2", "ttl": "Infinity"}),
    )
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="cache/.filecache/models/gone/head",
        Body=b'{"state":"published","key":"gone","nonce":"x"}',
    )
    for name in ("stray/big.bin", ".filecache/junk", "c/loose.bin"):
        s3.client.put_object(Bucket=s3.bucket, Key=f"cache/{name}", Body=b"s" * 100_000)
    config = CacheManagerConfig(evict_above=50_000, interval=3600)
    with FileCache(storage=storage(s3), config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        snapshot = cache.snapshot()
        assert snapshot.staging_size == 0
        assert not snapshot.is_over_limit  # strays never make the leader evict models
        assert [e.key for e in snapshot.entries] == ["c"]  # a marker without data is no model
        report = cache.verify()
        assert any("corrupt head of 'c2'" in p and "Infinity" in p for p in report.problems)
        assert any("head of 'gone'" in p and "marker without data" in p for p in report.problems)
        assert sum("objects outside any model or fill" in p for p in report.problems) == 3
        cache.verify(repair=True)
        after = cache.verify()
        assert after.ok, after.problems
        assert [e.key for e in after.snapshot.entries] == ["c"]
    (attempt,) = attempts(s3, "c")
    assert sorted(s3.live_keys("cache/")) == [
        "cache/.filecache/models/c/head",
        f"cache/c/.filecache/{attempt}.meta",
        f"cache/c/.filecache/{attempt}/part-0",
    ]


def test_a_publish_whose_every_response_was_lost_succeeds(s3: S3Env) -> None:
    # S3 applies the marker's PUT, but the answer never arrives, on every retry.
    outcome = result(
        spawn(
            "fill",
            s3,
            "host-a",
            keys=["m"],
            parts=2,
            lose_responses='"state":"published"',
            retries=2,
        )
    )
    assert outcome == {"new": {"m": True}, "errors": {}, "lost": 3}  # all 3 tries lost
    assert model_files(s3, "m") == parts("host-a", "m", 2)


def test_a_forked_child_leaves_its_parents_leases_and_pins_alone(s3: S3Env, tmp_path: Path) -> None:
    publish(s3, "f", {"data.bin": b"f"})
    report = result(spawn("fork", s3, "host-p", key="f", report=str(tmp_path / "child.json")))
    child = report["child"]
    assert "error" not in child, child
    assert child["parent_locks_lost_here"] == [True, True, True]
    assert child["own_pin"] is True
    assert child["pins_while_held"] == 2  # the parent's and its own
    assert child["requests"] > 0  # counted on the child's own client
    assert report["parent_locks_lost"] == [False, False, False]
    assert len(report["pins"]) == 1  # the parent's, renewed; the child's went with it
    assert report["models"] == ["f", "f-child", "f-parent"]
    assert report["objects_left"] == []
