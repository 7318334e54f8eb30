"""S3Storage against a local S3 endpoint (moto's server): the shared contract, then S3 specifics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from vcti.filecache.storage.base import (
    CacheStorage,
    LeasedStorage,
    LeaseLock,
    PolicyStateStorage,
    SharedStorage,
)
from vcti.filecache.storage.s3 import S3Storage
from vcti.filecache.testing import (
    LeasedStorageContract,
    PolicyStateStorageContract,
    SharedStorageContract,
    StorageContract,
)

from .conftest import S3Env

TTL = 2.0  # a live holder must renew in time even on a loaded machine


class TestS3Storage(
    StorageContract, SharedStorageContract, LeasedStorageContract, PolicyStateStorageContract
):
    @pytest.fixture(autouse=True)
    def _bucket(self, s3: S3Env) -> None:
        self.s3 = s3

    def make_storage(self, tmp_path: Path) -> CacheStorage:
        # A short TTL: the suites wait for a killed process's claims to be seen expired.
        storage: CacheStorage = self.s3.storage(lease_ttl=TTL)
        return storage

    def write_file(self, storage: CacheStorage, folder: str, name: str, data: bytes) -> None:
        # With the storage's own client: in a forked child, that is a client of the child's.
        assert isinstance(storage, S3Storage)
        bucket, _, key = folder.removeprefix("s3://").partition("/")
        storage.client.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=data)


# -- packaging and construction ---------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_does_not_import_boto3() -> None:
    result = run_python(
        "import sys, vcti.filecache, vcti.filecache.storage\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
        "from vcti.filecache.storage import S3Storage\n"
        "assert 'boto3' in sys.modules and S3Storage.__module__ == 'vcti.filecache.storage.s3'\n"
    )
    assert result.returncode == 0, result.stderr


def test_without_boto3_the_error_names_the_extra() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['boto3'] = None  # as if it were not installed\n"
        "try:\n"
        "    from vcti.filecache.storage import S3Storage\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'vcti-file-cache[s3]'" in result.stdout


def test_a_given_client_is_used_as_it_is(s3: S3Env) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3.url)
    storage = s3.storage(client=client)
    assert storage.client is client
    assert storage.root == f"s3://{s3.bucket}/cache"
    assert storage.path("a/b") == f"s3://{s3.bucket}/cache/a/b"
    storage.open()
    client.put_object(Bucket=s3.bucket, Key="mine.txt", Body=b"not counted")
    # The bucket, the server's check of its conditional writes (a few PUTs of one object,
    # and its DELETE; one PUT more where If-Match takes bare ETags), and one listing.
    counts = storage.request_counts
    assert counts.pop("PutObject") == (6 if s3.server == "ceph" else 5)
    assert counts == {"HeadBucket": 1, "DeleteObject": 1, "ListObjectsV2": 1}
    with pytest.raises(TypeError, match="either client"):
        S3Storage(s3.bucket, client=client, endpoint_url=s3.url)


def test_a_session_and_a_config_make_the_client(s3: S3Env) -> None:
    import boto3

    session = boto3.session.Session(region_name="eu-west-1")
    storage = S3Storage(
        s3.bucket, session=session, endpoint_url=s3.url, config=Config(retries={"max_attempts": 7})
    )
    config = storage.client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 8}  # 7 retries
    assert storage.client.meta.region_name == "eu-west-1"
    assert S3Storage(s3.bucket, endpoint_url=s3.url).client.meta.config.retries == {
        "mode": "standard",
        "total_max_attempts": 5,
    }
    assert S3Storage(s3.bucket, prefix="", endpoint_url=s3.url).root == f"s3://{s3.bucket}"
    assert S3Storage(s3.bucket, prefix="x/y", endpoint_url=s3.url).prefix == "x/y/"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket": ""},
        {"bucket": "a/b"},
        {"prefix": "/abs"},
        {"prefix": "a//b"},
        {"lease_ttl": 0},
        {"lease_ttl": float("inf")},
        {"delete_delay": -1},
        {"host_id": "a/b"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    name = next(iter(kwargs))
    kwargs.setdefault("bucket", "bucket")
    with pytest.raises(ValueError, match=name):
        S3Storage(**kwargs, endpoint_url="http://127.0.0.1:9")


# -- capabilities -----------------------------------------------------------------------


def test_leases_are_a_declared_capability(s3: S3Env) -> None:
    storage = s3.storage(lease_ttl=2.0)
    assert isinstance(storage, LeasedStorage)
    assert isinstance(storage, SharedStorage)
    assert storage.lease_ttl == 2.0
    storage.open()
    staged = storage.stage("m")
    storage.publish("m", staged, b'{"access_count":1,"last_access":1,"created":1}')
    locks = [storage.try_lead(), storage.pin("m"), storage.lock_fill("other", timeout=1)]
    for lock in locks:
        assert isinstance(lock, LeaseLock)
        assert lock.lost is False
        lock.release()
    assert storage.lock_fill("m", timeout=1).lost is False  # a model: nothing to hold


def test_policy_state_is_kept_in_the_bucket(s3: S3Env) -> None:
    storage = s3.storage()
    assert isinstance(storage, PolicyStateStorage)
    with pytest.raises(FileNotFoundError, match="no state stored for policy 'gdsf'"):
        storage.read_state("gdsf")
    storage.write_state("gdsf", b"clock=1")
    storage.write_state("gdsf", b"clock=2")  # replaced whole
    storage.write_state("sieve", b"")
    assert storage.read_state("gdsf") == b"clock=2"
    assert storage.read_state("sieve") == b""
    assert s3.storage().read_state("gdsf") == b"clock=2"  # another host reads it back
    assert sorted(s3.object_keys("cache/")) == [
        "cache/.filecache/policy/gdsf",
        "cache/.filecache/policy/sieve",
    ]
    # Not a leftover, not a stray: sweeps and verify leave policy state alone.
    storage.open()
    assert storage.verify(repair=True) == []
    assert storage.read_state("gdsf") == b"clock=2"
    for bad in ("", "a/b", "..", "x\n", "é" * 200):
        with pytest.raises(ValueError, match="policy state name"):
            storage.write_state(bad, b"x")
        with pytest.raises(ValueError, match="policy state name"):
            storage.read_state(bad)
    with pytest.raises(TypeError, match="bytes"):
        storage.write_state("gdsf", "text")  # type: ignore[arg-type]
