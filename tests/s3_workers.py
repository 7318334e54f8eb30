"""Worker processes sharing an S3 cache: ``python -m tests.s3_workers MODE ARGS_JSON``.

Each worker is one "host": it makes its own boto3 client and S3Storage with its own
``host_id``, against the local endpoint given in ARGS (``url``, ``bucket``, ``prefix``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

import boto3

from vcti.filecache import CacheManagerConfig, CacheObserver, FileCache
from vcti.filecache.storage.s3 import S3Storage

from .workers import append_line


def payload(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def write_model(client: Any, path: str, key: str, size: int) -> None:
    bucket, base = split(path)
    client.put_object(Bucket=bucket, Key=f"{base}/data.bin", Body=payload(key, size))
    manifest = {"size": size, "sha256": hashlib.sha256(payload(key, size)).hexdigest()}
    client.put_object(Bucket=bucket, Key=f"{base}/manifest.json", Body=json.dumps(manifest))


def check_model(client: Any, path: str) -> str | None:
    """Return None if the model at ``path`` is complete, else what is wrong."""
    bucket, base = split(path)
    try:
        manifest = json.loads(
            client.get_object(Bucket=bucket, Key=f"{base}/manifest.json")["Body"].read()
        )
        data = client.get_object(Bucket=bucket, Key=f"{base}/data.bin")["Body"].read()
    except Exception as exc:
        return f"unreadable: {exc!r}"
    if len(data) != manifest["size"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        return f"partial: {len(data)} of {manifest['size']} bytes"
    return None


class EventLog(CacheObserver):
    """Appends leadership changes, evictions and errors to a file shared by the workers."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_leader_change(self, is_leader: bool) -> None:
        append_line(self.path, f"leader {os.getpid()} {int(is_leader)} {time.time()}")

    def on_evict(self, path: str) -> None:
        append_line(self.path, f"evict {os.getpid()} {path}")

    def on_error(self, error: Exception, context: str) -> None:
        append_line(self.path, f"error {os.getpid()} {context} {error!r}")


def open_cache(args: dict[str, Any], **config: Any) -> tuple[Any, FileCache]:
    client = boto3.client("s3", endpoint_url=args["url"])
    storage = S3Storage(
        args["bucket"],
        prefix=args.get("prefix", "cache/"),
        endpoint_url=args["url"],
        host_id=args["host"],
        lease_ttl=args.get("ttl", 2.0),
        delete_delay=0.05,
    )
    config.setdefault("evict_above", 10**9)
    config.setdefault("interval", args.get("interval", 3600))
    if "log" in args:
        config.setdefault("observer", EventLog(args["log"]))
    return client, FileCache(storage=storage, config=CacheManagerConfig(**config))


def lead(args: dict[str, Any]) -> None:
    """Open a cache and stay (until killed), logging leadership."""
    _, cache = open_cache(args)
    with cache:
        append_line(args["ready"], str(os.getpid()))
        while True:
            time.sleep(1)


def hold(args: dict[str, Any]) -> None:
    """Open a model and keep it open (until killed)."""
    _, cache = open_cache(args)
    with cache, cache.model(args["key"]) as model:
        assert check_model(cache.storage.client, model.path) is None
        append_line(args["ready"], str(os.getpid()))
        while True:
            time.sleep(1)


def fill(args: dict[str, Any]) -> dict[str, Any]:
    """Open each key; fill the new ones; report which were new."""
    client, cache = open_cache(args)
    new = {}
    with cache:
        for key in args["keys"]:
            with cache.model(key) as model:
                new[key] = model.new
                if model.new:
                    write_model(client, model.path, key, args.get("size", 1000))
    return {"new": new}


def read(args: dict[str, Any]) -> dict[str, Any]:
    """Open each key and check it is complete (a fill here is reported as a problem)."""
    client, cache = open_cache(args)
    problems = []
    with cache:
        for key in args["keys"]:
            with cache.model(key) as model:
                if model.new:
                    problems.append(f"{key}: not found")
                else:
                    problem = check_model(client, model.path)
                    if problem is not None:
                        problems.append(f"{key}: {problem}")
    return {"problems": problems}


def evict(args: dict[str, Any]) -> dict[str, Any]:
    """Evict down to nothing; report the keys evicted."""
    _, cache = open_cache(args, evict_above=1, evict_to=0)
    with cache:
        evicted = cache.evict()
        cache.storage.flush()
    return {"evicted": evicted}


def touch(args: dict[str, Any]) -> None:
    """Open one model many times, writing the accesses behind every ``interval``."""
    client, cache = open_cache(args)
    with cache:
        for _ in range(args["times"]):
            with cache.model(args["key"]) as model:
                if model.new:
                    write_model(client, model.path, args["key"], 100)
            time.sleep(args.get("pause", 0.0))


MODES = {"lead": lead, "hold": hold, "fill": fill, "read": read, "evict": evict, "touch": touch}


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    result = MODES[mode](json.loads(raw))
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
