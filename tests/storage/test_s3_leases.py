"""Leases, pins and fill locks of S3Storage, with dead hosts played by objects nobody renews."""

from __future__ import annotations

import json
import threading
import time

import pytest

from vcti.filecache._meta import Meta
from vcti.filecache.exceptions import LockTimeoutError

from ..helpers import wait_for
from .conftest import S3Env, every

TTL = 0.5  # for hosts that die or watch: an expiry is observed, never waited out by a holder
LIVE = 1.5  # for hosts that hold a lease and must renew it in time even on a loaded machine
DEAD = "d" * 16  # the attempt of a fill that died


def dead_lease(s3: S3Env, name: str, ttl: float = TTL) -> None:
    """Write a lease object as a host that then died would have left it."""
    body = {"holder": "dead-host", "key": "", "ttl": ttl, "nonce": "n", "written": 0}
    s3.client.put_object(Bucket=s3.bucket, Key=f"cache/{name}", Body=json.dumps(body))


def dead_claim(s3: S3Env, key: str, attempt: str = DEAD, ttl: float = TTL) -> None:
    """Write the claim on a key's head that a filler that then died would have left."""
    body = {"state": "filling", "attempt": attempt, "holder": "dead-host", "key": key}
    body.update(ttl=ttl, nonce="n", written=0)
    s3.client.put_object(
        Bucket=s3.bucket, Key=f"cache/.filecache/models/{key}/head", Body=json.dumps(body)
    )


def publish(storage: object, key: str, count: int = 1) -> str:
    """Publish ``key`` without a fill lock; return its attempt's object prefix."""
    staged = storage.stage(key)  # type: ignore[attr-defined]
    storage.publish(key, staged, Meta(count, 1.0, 1.0).encode())  # type: ignore[attr-defined]
    return staged.split("/", 3)[3]


def attempt_of(s3: S3Env, key: str) -> str:
    """The object prefix of the attempt the published model ``key`` has files or metadata in."""
    (meta,) = [k for k in s3.object_keys(f"cache/{key}/.filecache/") if k.endswith(".meta")]
    return meta.removesuffix(".meta")


def test_one_leader_and_a_takeover_after_the_ttl(s3: S3Env) -> None:
    first, second = s3.storage(lease_ttl=LIVE), s3.storage(lease_ttl=TTL)
    lead = first.try_lead()
    assert lead is not None
    assert first.try_lead() is None  # already leading
    deadline = time.monotonic() + 2 * LIVE
    while time.monotonic() < deadline:  # renewed in the background: never taken over
        assert second.try_lead() is None
        time.sleep(TTL / 5)
    lead.release()
    assert s3.object_keys("cache/.filecache/") == ["cache/.filecache/leader"]
    assert s3.live_keys("cache/.filecache/") == []  # released: vacant
    other = second.try_lead()
    assert other is not None
    other.release()

    dead_lease(s3, ".filecache/leader")
    started = time.monotonic()
    assert second.try_lead() is None  # first sighting: it may be alive
    wait_for(every(0.05, lambda: (lock := second.try_lead()) is not None and not lock.release()))
    assert time.monotonic() - started > TTL


def test_a_lease_body_with_a_longer_ttl_is_honoured(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    dead_lease(s3, ".filecache/leader", ttl=4)  # at most ten times our own: plausible
    assert storage.try_lead() is None
    time.sleep(3 * TTL)
    assert storage.try_lead() is None


@pytest.mark.parametrize("ttl", [1e9, "Infinity", "NaN", "30", -1])
def test_an_implausible_ttl_in_a_lease_body_expires_after_our_own(s3: S3Env, ttl: object) -> None:
    storage = s3.storage(lease_ttl=TTL)
    body = '{"holder":"h","key":"","nonce":"n","ttl":%s}' % (ttl if ttl != "30" else '"30"')
    s3.client.put_object(Bucket=s3.bucket, Key="cache/.filecache/leader", Body=body)
    assert storage.try_lead() is None  # first sighting: it may be alive
    started = time.monotonic()
    wait_for(every(0.05, lambda: (lock := storage.try_lead()) is not None and not lock.release()))
    assert time.monotonic() - started < 10 * TTL + 5  # not 1e9 seconds


def test_a_leader_that_lost_its_lease_stops_evicting_until_it_leads_again(s3: S3Env) -> None:
    zombie, thief = s3.storage(lease_ttl=LIVE), s3.storage(lease_ttl=TTL)
    publish(zombie, "m")
    lead = zombie.try_lead()
    assert lead is not None
    assert not lead.lost
    # Another host decided the lease had expired (say this one was paused) and took it.
    stolen = {"holder": "thief", "key": "", "ttl": 4, "nonce": "x", "written": 0}
    s3.client.put_object(Bucket=s3.bucket, Key="cache/.filecache/leader", Body=json.dumps(stolen))
    wait_for(lambda: lead.lost)  # the next renewal finds it taken
    assert zombie.remove("m") is False
    assert zombie.is_model("m")
    assert zombie.sweep() == 0  # sweeping is safe without the lease: it does not raise
    lead.release()  # what the core does with a lost lock: leaves the thief's lease alone
    assert "cache/.filecache/leader" in s3.object_keys()
    assert zombie.try_lead() is None  # the thief's lease is alive
    s3.client.delete_object(Bucket=s3.bucket, Key="cache/.filecache/leader")
    again = zombie.try_lead()
    assert again is not None
    assert zombie.remove("m") is True
    again.release()
    assert thief.try_lead() is not None


def test_a_dead_hosts_pin_expires(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    attempt = publish(storage, "m")
    s3.client.copy_object(
        Bucket=s3.bucket,
        Key=f"{attempt}.pins/dead-host-1",
        CopySource={"Bucket": s3.bucket, "Key": "cache/.filecache/models/m/head"},
    )
    assert storage.remove("m") is False
    assert storage.is_model("m")
    time.sleep(TTL * 1.5)
    assert storage.remove("m") is True
    storage.flush()
    assert s3.object_keys("cache/m/") == []


def test_a_live_pin_is_refreshed_and_blocks_other_hosts(s3: S3Env) -> None:
    owner, evictor = s3.storage(lease_ttl=LIVE), s3.storage(lease_ttl=LIVE)
    publish(owner, "m")
    pin = owner.pin("m")
    assert pin is not None
    deadline = time.monotonic() + 2 * LIVE
    while time.monotonic() < deadline:
        assert evictor.remove("m") is False
        time.sleep(LIVE / 6)
    pin.release()
    owner.flush()  # released pins are otherwise deleted a little later
    assert evictor.remove("m") is True


def test_a_pin_on_a_missing_model_is_none_and_pins_are_shared(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    assert storage.pin("m") is None
    publish(storage, "m")
    first, second = storage.pin("m"), storage.pin("m")
    assert first is not None
    assert second is not None
    assert len([k for k in s3.object_keys("cache/m/") if ".pins/" in k]) == 1
    first.release()
    assert storage.remove("m") is False  # still pinned by the second
    second.release()
    assert storage.remove("m") is True


def test_fill_lock_waits_then_takes_over_a_dead_fill(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    dead_claim(s3, "m", ttl=2.0)  # the TTL in the body is honoured (up to ten times ours)
    with pytest.raises(LockTimeoutError):
        storage.lock_fill("m", timeout=0.3)
    started = time.monotonic()
    lock = storage.lock_fill("m", timeout=30)
    assert time.monotonic() - started > 1.0
    assert storage.stage("m") != f"s3://{s3.bucket}/cache/m/.filecache/{DEAD}"  # its own attempt
    lock.release()
    assert s3.live_keys("cache/.filecache/") == []  # the claim is withdrawn: vacant


def test_a_held_fill_lock_is_renewed(s3: S3Env) -> None:
    holder, waiter = s3.storage(lease_ttl=LIVE), s3.storage(lease_ttl=LIVE)
    lock = holder.lock_fill("m", timeout=1)
    with pytest.raises(LockTimeoutError):
        waiter.lock_fill("m", timeout=2 * LIVE)
    releaser = threading.Timer(0.2, lock.release)
    releaser.start()
    waiter.lock_fill("m", timeout=30).release()
    releaser.join()


def test_a_fill_whose_lease_was_taken_over_is_not_published(s3: S3Env) -> None:
    slow = s3.storage(lease_ttl=TTL)
    lock = slow.lock_fill("m", timeout=1)
    staged = slow.stage("m")
    s3.put(staged, "data.bin", b"x")
    # Another host decided the claim had expired and took the fill over.
    dead_claim(s3, "m", attempt="e" * 16, ttl=4)
    wait_for(lambda: lock.lost)
    with pytest.raises(OSError, match="not publishing"):
        slow.publish("m", staged, Meta(1, 1.0, 1.0).encode())
    slow.discard(staged)  # its own attempt only: the other host's is not touched
    lock.release()
    assert not slow.is_model("m")
    assert s3.object_keys("cache/m/") == []
    assert (
        "e" * 16
        in s3.client.get_object(Bucket=s3.bucket, Key="cache/.filecache/models/m/head")["Body"]
        .read()
        .decode()
    )


def test_concurrent_metadata_updates_from_many_hosts_are_all_kept(s3: S3Env) -> None:
    publish(s3.storage(), "m", count=0)
    hosts, updates = 4, 25
    storages = [s3.storage() for _ in range(hosts)]

    def add_one(raw: bytes | None) -> bytes:
        assert raw is not None
        return Meta.decode(raw).add(1, 2.0).encode()

    def work(storage: object) -> None:
        for _ in range(updates):
            storage.update_meta("m", add_one)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=work, args=(s,)) for s in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Meta.decode(s3.storage().read_record("m")).access_count == hosts * updates


# -- eviction races and leftovers -------------------------------------------------------


def test_a_pin_that_lands_after_the_head_went_keeps_the_files(s3: S3Env) -> None:
    # A reader's conditional copy of the head landed just before the evictor deleted
    # the head, after the evictor looked for pins: the model is gone for new readers,
    # but the batched delete sees the pin and leaves the attempt's files to the reader.
    storage = s3.storage(lease_ttl=TTL, delete_delay=60)
    staged = storage.stage("m")
    s3.put(staged, "data.bin", b"x" * 10)
    storage.publish("m", staged, Meta(3, 1.0, 1.0).encode())
    attempt = staged.split("/", 3)[3]
    assert storage.remove("m") is True
    assert not storage.is_model("m")
    s3.client.put_object(Bucket=s3.bucket, Key=f"{attempt}.pins/late-1", Body=b"{}")
    storage.flush()
    assert f"{attempt}/data.bin" in s3.object_keys("cache/m/")
    assert storage.staging_size() == 10  # counted until it goes
    # The reader is gone (its pin is never renewed): a sweep deletes the files.
    wait_for(every(0.1, lambda: storage.sweep() == 10 or not s3.object_keys("cache/m/")))
    assert s3.object_keys("cache/m/") == []


def test_a_new_fill_never_touches_an_earlier_attempt(s3: S3Env) -> None:
    # What an evictor or a filler that died leaves behind: an attempt no head names.
    s3.client.put_object(Bucket=s3.bucket, Key=f"cache/m/.filecache/{DEAD}/old.bin", Body=b"old")
    storage = s3.storage()
    lock = storage.lock_fill("m", timeout=1)
    staged = storage.stage("m")
    s3.put(staged, "new.bin", b"new")
    storage.publish("m", staged, Meta(1, 1.0, 1.0).encode())
    lock.release()
    assert f"cache/m/.filecache/{DEAD}/old.bin" in s3.object_keys("cache/m/")
    assert storage.model_size("m") == 3
    assert storage.staging_size() == 3  # the old attempt, until a sweep
    assert storage.sweep() == 3
    assert storage.staging_size() == 0
    assert storage.model_size("m") == 3


def test_a_sweep_leaves_models_below_a_leftover_alone(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    publish(storage, "a/b")
    s3.client.put_object(Bucket=s3.bucket, Key=f"cache/a/.filecache/{DEAD}/x.bin", Body=b"12345")
    storage.open()  # a restart sweeps the leftover attempt of "a" (no head names it)
    assert [k for k in s3.object_keys("cache/a/") if not k.startswith("cache/a/b/")] == []
    assert list(storage.iter_models()) == ["a/b"]
    assert storage.model_size("a/b") == 0


def test_verify_reports_a_model_inside_a_model(s3: S3Env) -> None:
    storage = s3.storage()
    publish(storage, "a")
    publish(storage, "a/b")  # the core refuses this; a backend must still report it
    assert list(storage.iter_models()) == ["a", "a/b"]  # their files are apart
    problems = storage.verify(repair=True)
    assert problems == [f"model 'a' contains another model at s3://{s3.bucket}/cache/a/b"]
    assert storage.is_model("a/b")  # reported, never deleted


def test_a_fill_lock_taken_over_a_model_claims_when_the_model_vanishes(s3: S3Env) -> None:
    owner, filler = s3.storage(), s3.storage()
    publish(owner, "m")
    lock = filler.lock_fill("m", timeout=5)  # a model: the core pins it instead...
    assert not lock.lost
    # ...or, refilling another version, stages an attempt of its own that cannot be
    # published while the model stands (the core removes it first).
    over = filler.stage("m")
    s3.put(over, "data.bin", b"v2")
    with pytest.raises(FileExistsError):
        filler.publish("m", over, Meta(1, 1.0, 1.0).encode())
    filler.discard(over)
    assert owner.remove("m") is True  # evicted before the core's pin
    assert filler.pin("m") is None
    staged = filler.stage("m")  # the fill claims the key now, as lock_fill would have
    head = s3.client.get_object(Bucket=s3.bucket, Key="cache/.filecache/models/m/head")
    assert json.loads(head["Body"].read())["attempt"] == staged.rsplit("/", 1)[1]
    s3.put(staged, "data.bin", b"new")
    filler.publish("m", staged, Meta(1, 1.0, 1.0).encode())
    lock.release()
    assert filler.model_size("m") == 3
    assert owner.is_model("m")


def test_verify_reports_and_repairs_corrupt_leases_and_heads(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=TTL)
    publish(storage, "good")
    for key, body in {
        ".filecache/leader": '{"holder":"h","key":"","nonce":"n","ttl":1e9}',
        ".filecache/models/x/head": "not json",
        ".filecache/models/y/head": '{"state":"published","key":"elsewhere","nonce":"n"}',
    }.items():
        s3.client.put_object(Bucket=s3.bucket, Key=f"cache/{key}", Body=body.encode())
    problems = storage.verify(repair=False)
    assert sorted(p.split(":")[0] for p in problems) == [
        "corrupt head of 'x'",
        "corrupt head of 'y'",
        "corrupt leader lease",
    ]
    assert any("1e9" in p or "1000000000" in p for p in problems)
    assert list(storage.iter_models()) == ["good"]
    storage.verify(repair=True)
    assert storage.verify(repair=False) == []
    assert [k for k in s3.live_keys("cache/.filecache/") if "/good/" not in k] == []
