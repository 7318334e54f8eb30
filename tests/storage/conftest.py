"""Fixtures for the S3 tests: the S3 servers of the session, a fresh bucket per test.

Every S3 test runs against each server: moto's S3 server, and a real one, Ceph's RADOS
Gateway on a throw-away one-node Ceph (``tests/storage/ceph_gateway.py``) when Ceph is
installed; where it is not, the gateway's runs are skipped with the reason. With
``FILECACHE_TEST_S3_ENDPOINT`` set (and ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``),
the tests run against that endpoint alone. Each test makes its own bucket and removes it.

Nothing here reaches beyond the given endpoint or 127.0.0.1: the local servers listen
there, every client is given its URL, and the AWS settings come from environment
variables (no profile, no config file, no instance metadata lookup).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..helpers import REPO, is_vacant_object

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
ENDPOINT_VAR = "FILECACHE_TEST_S3_ENDPOINT"
#: The servers each S3 test runs against.
SERVERS = ("endpoint",) if os.environ.get(ENDPOINT_VAR) else ("moto", "ceph")


class ServerProcess:
    """``python -m MODULE ARGS`` in a process of its own, serving until its stdin closes.

    ``line`` is the first line it printed (what it serves, or why it could not).
    """

    def __init__(self, module: str, args: list[str], log: Path, stop_timeout: float) -> None:
        self._log = open(log, "w")  # noqa: SIM115 (open while the server runs)
        self._stop_timeout = stop_timeout
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._proc.stdout is not None
        self.line = self._proc.stdout.readline().strip()

    def stop(self) -> None:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.close()  # the server stops at the end of its stdin
        try:
            self._proc.wait(timeout=self._stop_timeout)
        finally:
            if self._proc.poll() is None:
                self._proc.terminate()
                self._proc.wait(timeout=self._stop_timeout)
            self._proc.stdout.close()
            self._log.close()


class MotoServer(ServerProcess):
    """The local S3 endpoint: ``tests/storage/moto_server.py`` (``dialect``: a stand-in)."""

    def __init__(self, log: Path, dialect: str = "") -> None:
        super().__init__(
            "tests.storage.moto_server", ["--dialect", dialect] if dialect else [], log, 30
        )
        self.url = self.line
        assert self.url.startswith("http://127.0.0.1:"), log.read_text()

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


class CephServer(ServerProcess):
    """A throw-away one-node Ceph and its S3 gateway: ``tests/storage/ceph_gateway.py``.

    It stops every daemon it started when it stops.
    """

    def __init__(self, log: Path) -> None:
        super().__init__("tests.storage.ceph_gateway", [], log, 60)
        line = self.line
        self.error = line.removeprefix("error: ") if not line.startswith("http") else ""
        self.url, _, keys = line.partition(" ")
        self.access_key, _, self.secret_key = keys.partition(" ")
        if not line:
            self.error = f"the Ceph gateway's starter ended without a word; see {log}"


@dataclass
class S3Server:
    """The S3 server the current tests run against."""

    name: str
    url: str
    moto: MotoServer | None = None

    def reset(self) -> None:
        """Forget every bucket and object, where the server can (moto)."""
        if self.moto is not None:
            self.moto.reset()


@pytest.fixture(scope="session", params=SERVERS)
def s3_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            if request.param != "endpoint" or name not in os.environ:
                mp.setenv(name, value)
        for name in AWS_UNSET:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        if request.param == "endpoint":
            yield S3Server("endpoint", os.environ[ENDPOINT_VAR])
        elif request.param == "moto":
            moto = MotoServer(home / "server.log")
            try:
                yield S3Server("moto", moto.url, moto)
            finally:
                moto.stop()
        else:
            from .ceph_gateway import missing_programs

            missing = missing_programs()
            if missing:
                pytest.skip(
                    "the S3 tests against Ceph's RADOS Gateway need Ceph: "
                    f"apt-get install {' '.join(missing)} (they ran against moto)"
                )
            ceph = CephServer(home / "ceph.log")
            try:
                if ceph.error:
                    pytest.fail(f"the Ceph gateway did not start: {ceph.error}")
                # The user has the keys of AWS_ENV (which moto takes too): the servers of
                # a session never need different settings in the environment.
                assert (ceph.access_key, ceph.secret_key) == (
                    AWS_ENV["AWS_ACCESS_KEY_ID"],
                    AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                )
                yield S3Server("ceph", ceph.url)
            finally:
                ceph.stop()


@dataclass
class S3Env:
    """A fresh bucket on the local server, a client to look at it, and storages on it."""

    url: str
    bucket: str
    client: Any
    server: str = "moto"  # moto, ceph, or endpoint (FILECACHE_TEST_S3_ENDPOINT)
    made: list[Any] = field(default_factory=list)

    def storage(self, **kwargs: Any) -> Any:
        """Return an S3Storage on this bucket (prefix ``cache/``)."""
        from vcti.filecache.storage.s3 import S3Storage

        kwargs.setdefault("prefix", "cache/")
        kwargs.setdefault("lease_ttl", 5.0)  # tests of expiry pass a short one
        kwargs.setdefault("delete_delay", 0.05)
        if "client" not in kwargs:
            kwargs.setdefault("endpoint_url", self.url)
        storage = S3Storage(self.bucket, **kwargs)
        self.made.append(storage)
        return storage

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every object key below ``prefix``, by a fresh listing."""
        paginator = self.client.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def live_keys(self, prefix: str = "") -> list[str]:
        """``object_keys``, less the vacant heads and leases (released, kept on purpose)."""
        return [
            k for k in self.object_keys(prefix) if not is_vacant_object(self.client, self.bucket, k)
        ]

    def put(self, uri: str, name: str, data: bytes) -> None:
        """Write object ``name`` below the folder URI ``uri`` (``s3://bucket/key``)."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self.client.put_object(Bucket=bucket, Key=f"{key}/{name}", Body=data)

    def get(self, uri: str, name: str) -> bytes:
        """Read object ``name`` below the folder URI ``uri``."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body: bytes = self.client.get_object(Bucket=bucket, Key=f"{key}/{name}")["Body"].read()
        return body


def every(seconds: float, condition: Callable[[], object]) -> Callable[[], bool]:
    """``condition``, asked at most every ``seconds`` (for ``wait_for`` loops that send
    requests: the server decides one request at a time)."""

    def ask() -> bool:
        time.sleep(seconds)
        return bool(condition())

    return ask


def remove_bucket(client: Any, bucket: str) -> None:
    """Delete every object of ``bucket``, then the bucket."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Env]:
    import boto3

    s3_server.reset()
    client = boto3.client("s3", endpoint_url=s3_server.url)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    env = S3Env(s3_server.url, bucket, client, s3_server.name)
    yield env
    for storage in env.made:
        storage.flush()
    if s3_server.moto is None:
        remove_bucket(client, bucket)
