"""The check of an S3 server's conditional writes, against stand-ins for servers that differ.

Each stand-in is moto's server changed in one way (``tests/storage/moto_server.py
--dialect``): these tests need a server that lacks something, which neither moto nor the
gateway does, so they run on stand-ins only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vcti.filecache import CacheManagerConfig, FileCache, StorageError
from vcti.filecache.storage.s3 import S3Storage

from .conftest import AWS_ENV, AWS_UNSET, MotoServer


@pytest.fixture
def stand_in(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A stand-in of the dialect the test is parametrized with: ``(url, bucket)``."""
    import boto3

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    server = MotoServer(tmp_path / "server.log", request.param)
    try:
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=bucket)
        yield server.url, bucket
    finally:
        server.stop()


def objects(url: str, bucket: str) -> list[str]:
    import boto3

    listing = boto3.client("s3", endpoint_url=url).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


@pytest.mark.parametrize(
    ("stand_in", "feature"),
    [
        ("no-if-none-match", "conditional creation (PutObject with If-None-Match: *)"),
        ("no-if-match", "conditional replacement (PutObject with If-Match)"),
    ],
    indirect=["stand_in"],
)
def test_a_server_lacking_a_condition_is_refused_at_open(
    stand_in: tuple[str, str], feature: str
) -> None:
    url, bucket = stand_in
    config = CacheManagerConfig(evict_above=10**6)
    with pytest.raises(StorageError) as caught:
        FileCache(config=config, storage=S3Storage(bucket, "cache/", endpoint_url=url)).open()
    assert isinstance(caught.value, OSError)
    assert f"lacks {feature}" in str(caught.value)
    assert url in str(caught.value)
    assert objects(url, bucket) == []  # the check's object is gone; nothing was cached


@pytest.mark.parametrize("stand_in", ["bare-if-match"], indirect=True)
def test_if_match_is_sent_in_the_form_the_server_accepts(stand_in: tuple[str, str]) -> None:
    """A server that compares If-Match without quotes (Ceph's gateway 16): leases are
    renewed and released, models published, updated and evicted."""
    url, bucket = stand_in
    storage = S3Storage(bucket, "cache/", endpoint_url=url, lease_ttl=5.0)
    config = CacheManagerConfig(evict_above=10**6, interval=3600)
    with FileCache(config=config, storage=storage) as cache:
        with cache.model("m") as model:
            assert model.new
        with cache.model("m") as model:
            assert not model.new
        assert storage.remove("m") is True
        with cache.model("m") as model:  # the vacant head is claimed again
            assert model.new
    # A second storage takes the leader lease the first one released (made vacant).
    other = S3Storage(bucket, "cache/", endpoint_url=url, lease_ttl=5.0)
    other.open()
    handle = other.try_lead()
    assert handle is not None
    lease = other._hold.leader  # renewing needs If-Match in the accepted form
    assert lease is not None
    assert other._leases.renew(lease)
    assert not lease.lost
    handle.release()
