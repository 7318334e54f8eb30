"""Fixtures for the S3 tests: one local moto server per session, a fresh bucket per test.

Nothing here reaches beyond 127.0.0.1: the server listens there, every client is given
its URL, and the AWS settings come from dummy environment variables (no profile, no
config file, no instance metadata lookup).
"""

from __future__ import annotations

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

from ..helpers import REPO

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class MotoServer:
    """The local S3 endpoint: ``tests/storage/moto_server.py`` in a process of its own."""

    def __init__(self, log: Path) -> None:
        self._log = open(log, "w")  # noqa: SIM115 (open while the server runs)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.storage.moto_server"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), log.read_text()

    def stop(self) -> None:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.close()  # the server stops at the end of its stdin
        try:
            self._proc.wait(timeout=30)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
            self._log.close()

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        for name in AWS_UNSET:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        server = MotoServer(home / "server.log")
        yield server
        server.stop()


@dataclass
class S3Env:
    """A fresh bucket on the local server, a client to look at it, and storages on it."""

    url: str
    bucket: str
    client: Any
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


@pytest.fixture
def s3(moto_server: MotoServer) -> Iterator[S3Env]:
    import boto3

    moto_server.reset()
    client = boto3.client("s3", endpoint_url=moto_server.url)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    env = S3Env(moto_server.url, bucket, client)
    yield env
    for storage in env.made:
        storage.flush()
