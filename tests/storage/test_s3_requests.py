"""How many S3 requests a scan, a hit and an eviction cost (counted by S3Storage itself)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache, LruPolicy

from ..helpers import FakeClock, wait_for
from .conftest import S3Env

# Enough objects for a listing of more than one page (S3 lists 1,000 keys a request) and an
# eviction of more than one DeleteObjects batch (1,000 keys each), and no more: every file
# is a PUT through the local server.
MODELS, FILES, FILE_SIZE = 12, 100, 10
MODEL_SIZE = FILES * FILE_SIZE
EVICTED = 10  # their files and metadata records: 10 x 101 = 1,010 keys, two batches


def cost(storage: Any, action: Callable[[], object]) -> dict[str, int]:
    """The S3 calls ``storage`` made while ``action`` ran, by operation.

    A hook of this test on the storage's client (which nothing else uses here) counts
    the calls and botocore's retries of them; ``request_counts``, which counts HTTP
    requests, must equal calls plus retries. Retries are rare here, but a loaded
    machine can make one time out, so the numbers asserted are the calls.
    """
    calls: Counter[str] = Counter()
    retries: Counter[str] = Counter()

    def count(model: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        calls[model.name] += 1
        retries[model.name] += parsed.get("ResponseMetadata", {}).get("RetryAttempts", 0)

    storage.client.meta.events.register("after-call.s3", count, unique_id="test-cost")
    try:
        before = Counter(storage.request_counts)
        action()
        after = Counter(storage.request_counts)
    finally:
        storage.client.meta.events.unregister("after-call.s3", unique_id="test-cost")
    assert dict(after - before) == dict(calls + retries)
    return dict(calls)


def test_scan_hit_and_eviction_costs(s3: S3Env) -> None:
    clock = FakeClock()
    # A long lease TTL: no renewal or pin refresh happens while requests are counted.
    storage = s3.storage(lease_ttl=600, delete_delay=600)
    config = CacheManagerConfig(
        evict_above=MODELS * MODEL_SIZE, interval=3600, clock=clock, policy=LruPolicy()
    )
    with FileCache(storage=storage, config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        with ThreadPoolExecutor(4) as pool:
            for m in range(MODELS):
                with cache.model(f"runs/m{m:02d}") as model:
                    _, _, base = model.path.removeprefix("s3://").partition("/")
                    list(
                        pool.map(
                            lambda n, base=base: s3.client.put_object(
                                Bucket=s3.bucket, Key=f"{base}/f{n:03d}", Body=b"x" * FILE_SIZE
                            ),
                            range(FILES),
                        )
                    )
                clock.advance(1)
        objects = len(s3.object_keys("cache/"))  # the files, plus a head and a metadata record
        assert objects == MODELS * (FILES + 2) + 1  # + the leader lease
        pages = math.ceil(objects / 1000)
        assert pages == 2

        # A fill of a new key two levels deep: a GET of its head (no model), the claim
        # (a conditional PUT), a GET of the one ancestor's head and a listing of the heads
        # below (the nesting check across hosts), a listing of the attempt (its size, recorded
        # with the metadata), the metadata record and the publish (a conditional PUT over
        # the claim). Writing the files is the user's own requests.
        def fill_new() -> None:
            with cache.model("runs/new") as model:
                assert model.new

        assert cost(storage, fill_new) == {"GetObject": 2, "PutObject": 3, "ListObjectsV2": 2}
        assert storage.remove("runs/new") is True
        storage.flush()

        # A scan: the listing pages, and nothing else (the metadata was written here).
        assert cost(storage, cache.snapshot) == {"ListObjectsV2": pages}
        # Another host's first scan also reads each model's metadata once (its heads are
        # recognised by their ETags), and the vacant head the removal left, once; its next
        # scan reads none that did not change.
        other = s3.storage(lease_ttl=600)
        assert cost(other, lambda: list(other.iter_models())) == {
            "ListObjectsV2": pages,
            "GetObject": MODELS + 1,
        }
        assert cost(other, lambda: list(other.iter_models())) == {"ListObjectsV2": pages}

        # A hit: one conditional CopyObject of the head (it checks that the model is still
        # the same attempt and writes the pin); another hit of the same model while the pin
        # object lives costs nothing.
        def hit(key: str) -> None:
            with cache.model(key) as model:
                assert not model.new

        assert cost(storage, lambda: hit(f"runs/m{MODELS - 1:02d}")) == {"CopyObject": 1}
        assert cost(storage, lambda: hit(f"runs/m{MODELS - 1:02d}")) == {}
        # A process that never saw the model reads its head once first.
        third = s3.storage(lease_ttl=600)
        assert cost(third, lambda: third.pin(f"runs/m{MODELS - 2:02d}").release()) == {  # type: ignore[union-attr]
            "GetObject": 1,
            "CopyObject": 1,
        }
        third.flush()  # its released pin object goes now, not a third of the TTL later
        # Writing the accesses behind: one conditional PUT per accessed model and cycle.
        assert cost(storage, cache.manager.flush) == {"PutObject": 1}

        # Evicting 10 models: their files go in ceil(files / 1000) DeleteObjects requests;
        # per model, its head made vacant and two small listings.
        evicted = EVICTED
        config_small = CacheManagerConfig(
            evict_above=(MODELS - evicted) * MODEL_SIZE, interval=3600, clock=clock
        )
        cache._config = config_small  # the same cache with a lower limit
        gone: list[str] = []

        def evict() -> None:
            gone.extend(cache.evict())
            storage.flush()

        spent = cost(storage, evict)
        assert gone == [f"runs/m{m:02d}" for m in range(evicted)]
        deleted = evicted * (FILES + 1)  # files and metadata records (heads go one by one first)
        # A scan, then per model: a listing of its pins, the head made vacant (a
        # conditional PUT), and a listing of the attempt for the batched delete.
        assert spent == {
            "ListObjectsV2": pages + 2 * evicted,
            "PutObject": evicted,
            "DeleteObjects": math.ceil(deleted / 1000),
        }
        assert spent["DeleteObjects"] == 2  # more than one batch
        # The vacant heads stay (of the evicted models, and of the one removed above).
        assert len(s3.object_keys("cache/")) == objects + 1 - evicted * (FILES + 1)


def test_a_waiting_host_costs_one_request_per_cycle(s3: S3Env) -> None:
    leader, waiter = s3.storage(lease_ttl=600), s3.storage(lease_ttl=600)
    lock = leader.try_lead()
    assert lock is not None
    assert cost(waiter, waiter.try_lead) == {"GetObject": 1}
    # Released: made vacant with a conditional PUT (a lease object is never deleted).
    assert cost(leader, lock.release) == {"PutObject": 1}
    assert cost(waiter, lambda: waiter.try_lead().release()) == {  # type: ignore[union-attr]
        "GetObject": 1,  # vacant: nobody leads
        "PutObject": 2,  # taken over the vacant body's ETag, then made vacant again
    }
