"""S3 faults, injected with a botocore ``before-send`` hook on the storage's own client.

The hook answers chosen requests itself (a 503 SlowDown, a 403, a DeleteObjects result
with errors) or raises a connection error, before anything is sent; the backend must
retry what can be retried and report the rest as ``OSError`` to ``on_error``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from vcti.filecache import CacheManagerConfig, FileCache
from vcti.filecache.storage.s3._client import ConditionFailedError
from vcti.filecache.testing import RecordingObserver

from ..helpers import wait_for
from .conftest import S3Env


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def error_xml(code: str, message: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


class Faults:
    """A ``before-send`` hook that fails the first ``times`` requests of ``ops``."""

    def __init__(
        self,
        ops: set[str],
        *,
        times: int | None = None,
        status: int = 503,
        code: str = "SlowDown",
        connection: bool = False,
    ) -> None:
        self.ops = ops
        self.remaining = times
        self.status = status
        self.code = code
        self.connection = connection
        self.injected = 0

    def attach(self, storage: Any) -> Faults:
        storage.client.meta.events.register("before-send.s3", self, unique_id=f"faults-{id(self)}")
        return self

    def detach(self, storage: Any) -> None:
        storage.client.meta.events.unregister("before-send.s3", unique_id=f"faults-{id(self)}")

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        if event_name.rpartition(".")[2] not in self.ops or self.remaining == 0:
            return None
        if self.remaining is not None:
            self.remaining -= 1
        self.injected += 1
        if self.connection:
            raise EndpointConnectionError(endpoint_url=request.url)
        body = error_xml(self.code, "injected by the test")
        return AWSResponse(request.url, self.status, {}, _Body(body))


class FailedDeletes:
    """A ``before-send`` hook answering DeleteObjects with an error for every key."""

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        if not event_name.endswith(".DeleteObjects"):
            return None
        keys = re.findall(rb"<Key>(.*?)</Key>", request.body)
        errors = b"".join(
            b"<Error><Key>%s</Key><Code>InternalError</Code><Message>injected</Message></Error>"
            % key
            for key in keys
        )
        body = b"<DeleteResult>" + errors + b"</DeleteResult>"
        return AWSResponse(request.url, 200, {}, _Body(body))


def open_cache(storage: Any, recorder: RecordingObserver, **kwargs: Any) -> FileCache:
    kwargs.setdefault("evict_above", 10**9)
    config = CacheManagerConfig(interval=3600, observer=recorder, **kwargs)
    cache = FileCache(storage=storage, config=config).open()
    wait_for(lambda: cache.manager.cycles >= 1)
    return cache


def test_throttling_and_connection_errors_are_retried(s3: S3Env) -> None:
    storage = s3.storage()
    recorder = RecordingObserver()
    cache = open_cache(storage, recorder)
    try:
        throttled = Faults({"PutObject", "CopyObject"}, times=2).attach(storage)
        with cache.model("m") as model:  # the key file and the marker are PUTs
            s3.put(model.path, "data.bin", b"x" * 10)
        assert throttled.injected == 2
        throttled.detach(storage)
        dropped = Faults({"ListObjectsV2", "CopyObject"}, times=3, connection=True).attach(storage)
        with cache.model("m") as model:
            assert not model.new
        assert [(e.key, e.size) for e in cache.entries()] == [("m", 10)]
        assert dropped.injected == 3
        dropped.detach(storage)
        assert recorder.errors() == []
        counts = storage.request_counts
        assert counts["PutObject"] >= 4  # the two that were answered 503 count too
    finally:
        cache.close()


def test_a_persistent_failure_reaches_on_error_and_the_manager_keeps_running(s3: S3Env) -> None:
    storage = s3.storage(config=Config(retries={"max_attempts": 2}))
    recorder = RecordingObserver()
    cache = open_cache(storage, recorder)
    try:
        with cache.model("m") as model:
            s3.put(model.path, "data.bin", b"x" * 10)
        with cache.model("m"):
            pass
        faults = Faults({"PutObject", "ListObjectsV2"}, status=500, code="InternalError")
        faults.attach(storage)
        assert cache.manager.run_once() is None
        errors = recorder.errors()
        # The accesses could not be written; the scan failed as a whole (a partial
        # listing would understate the cache), so the cycle stopped there.
        assert {context for _, context in errors} == {"metadata", "cycle"}
        assert all(isinstance(error, OSError) for error, _ in errors)
        assert any("InternalError" in str(error) for error, _ in errors)
        assert cache.manager.is_running
        faults.detach(storage)
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert [e.access_count for e in snapshot.entries] == [2]  # no access was lost
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "AccessDenied", PermissionError),
        (404, "NoSuchKey", FileNotFoundError),
        (500, "InternalError", OSError),
    ],
)
def test_errors_become_oserrors(s3: S3Env, status: int, code: str, error: type[OSError]) -> None:
    storage = s3.storage(config=Config(retries={"max_attempts": 1}))
    staged = storage.stage("m")
    storage.publish("m", staged, b'{"access_count":1,"last_access":1,"created":1}')
    faults = Faults({"GetObject"}, status=status, code=code).attach(storage)
    with pytest.raises(error, match=code) as raised:
        storage.read_record("m")
    assert raised.value.filename == f"{staged}.meta"  # the attempt's metadata record
    faults.detach(storage)


def test_a_missing_bucket_is_a_clear_error(s3: S3Env) -> None:
    from vcti.filecache.storage.s3 import S3Storage

    storage = S3Storage("no-such-bucket", endpoint_url=s3.url)
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        storage.open()


def test_failed_deletes_are_left_for_a_later_sweep(s3: S3Env) -> None:
    evictor = s3.storage()
    staged = evictor.stage("m")
    s3.put(staged, "data.bin", b"x" * 10)
    evictor.publish("m", staged, b'{"access_count":1,"last_access":1,"created":1}')
    hook = FailedDeletes()
    evictor.client.meta.events.register("before-send.s3", hook, unique_id="failed-deletes")
    assert evictor.remove("m") is True
    evictor.flush()
    evictor.client.meta.events.unregister("before-send.s3", unique_id="failed-deletes")
    assert not evictor.is_model("m")
    assert "cache/m/.filecache/" in " ".join(s3.object_keys())
    # No head names the attempt any more: any sweep, in any process, may delete it.
    sweeper = s3.storage()
    assert list(sweeper.iter_models()) == []
    assert sweeper.staging_size() == 10
    assert sweeper.sweep() == 10
    assert s3.live_keys() == []


class RaceThen500:
    """A ``before-send`` hook for the first conditional PutObject (``If-Match``): the
    object is written first (by ``writer``, with ``body(request)``), then the request is
    answered 500, as Ceph's gateway answers some losers of a race."""

    def __init__(self, writer: Any, bucket: str, body: Any) -> None:
        self.writer, self.bucket, self.body = writer, bucket, body
        self.injected = 0

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        if self.injected or not event_name.endswith(".PutObject"):
            return None
        if "If-Match" not in request.headers:
            return None
        self.injected += 1
        key = request.url.split(f"/{self.bucket}/", 1)[1]
        self.writer.put_object(Bucket=self.bucket, Key=key, Body=self.body(request))
        body = error_xml("InternalError", "injected by the test")
        return AWSResponse(request.url, 500, {}, _Body(body))


@pytest.mark.parametrize("winner", ["another host", "ours"])
def test_a_conditional_write_answered_500_is_decided_by_the_object(s3: S3Env, winner: str) -> None:
    storage = s3.storage(lease_ttl=600, config=Config(retries={"max_attempts": 1}))
    handle = storage.try_lead()
    assert handle is not None
    lease = storage._hold.leader
    assert lease is not None
    before = lease.etag

    def body(request: Any) -> bytes:
        data = request.body
        data = data if isinstance(data, bytes) else data.read()
        return b'{"holder":"another host"}' if winner == "another host" else data

    hook = RaceThen500(s3.client, s3.bucket, body)
    storage.client.meta.events.register("before-send.s3", hook, unique_id="race-500")
    try:
        assert storage._leases.renew(lease)  # no error: the object tells how the race ended
    finally:
        storage.client.meta.events.unregister("before-send.s3", unique_id="race-500")
    assert hook.injected == 1
    current = s3.client.head_object(Bucket=s3.bucket, Key="cache/.filecache/leader")["ETag"]
    if winner == "another host":
        assert lease.lost  # like a 412: another writer won
        assert lease.etag == before
    else:
        assert not lease.lost  # ours landed: renewed
        assert lease.etag == current
    handle.release()


def test_if_match_on_a_missing_object_is_not_found_on_every_server(s3: S3Env) -> None:
    """AWS answers 404; Ceph's gateway answers 412, and a HEAD tells them apart."""
    storage = s3.storage()
    storage.open()  # the server check learns which answer this server gives
    calls = storage._calls
    with pytest.raises(FileNotFoundError):
        calls.put("cache/never-written", b"x", if_match='"0123456789abcdef0123456789abcdef"')
    etag = calls.put("cache/written", b"x")
    with pytest.raises(ConditionFailedError):
        calls.put("cache/written", b"y", if_match='"0123456789abcdef0123456789abcdef"')
    assert calls.put("cache/written", b"z", if_match=etag) != etag


def test_racing_conditional_writes_have_one_winner_and_only_lost_conditions(s3: S3Env) -> None:
    """Sixteen writers replace one object over the same ETag at once (some losers get 500
    from Ceph's gateway): one wins, and each other one sees a lost condition."""
    storage = s3.storage()
    storage.open()
    calls = storage._calls
    for round_ in range(3):
        etag = calls.put("cache/raced", f"start {round_}".encode())
        barrier = threading.Barrier(16)

        def write(n: int, etag: str = etag, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                return calls.put("cache/raced", f"writer {n}".encode(), if_match=etag)
            except ConditionFailedError:
                return "lost"

        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(write, range(16)))
        winners = [n for n, outcome in enumerate(outcomes) if outcome != "lost"]
        assert len(winners) == 1, outcomes
        body = s3.client.get_object(Bucket=s3.bucket, Key="cache/raced")["Body"].read()
        assert body == f"writer {winners[0]}".encode()
