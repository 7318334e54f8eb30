"""Worker processes sharing an S3 cache: ``python -m tests.s3_workers MODE ARGS_JSON``.

Each worker is one "host": it makes its own boto3 client and S3Storage with its own
``host_id``, against the local endpoint given in ARGS (``url``, ``bucket``, ``prefix``).

A worker can stop itself with SIGSTOP at a chosen point (``pause_at``: before the first
request of an S3 operation whose URL contains a given text; ``pause_in_fill``: after the
first file of a fill), writing ``paused PID`` to the file ``paused`` first; the test
resumes it with SIGCONT. So a pause lands exactly where it does the most harm.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from vcti.filecache import CacheManagerConfig, CacheObserver, FileCache
from vcti.filecache.storage.s3 import S3Storage

from .helpers import is_vacant_object
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


def pause_here(args: dict[str, Any]) -> None:
    """Tell the test, then stop this whole process until it sends SIGCONT."""
    append_line(args["paused"], f"paused {os.getpid()}")
    os.kill(os.getpid(), signal.SIGSTOP)


def pause_before(storage: S3Storage, args: dict[str, Any]) -> None:
    """Stop the process before the first request of ``pause_at = [operation, url text]``."""
    operation, needle = args["pause_at"]
    done = []

    def hook(request: Any, event_name: str, **kwargs: Any) -> None:
        if done or not event_name.endswith("." + operation) or needle not in request.url:
            return
        done.append(True)
        pause_here(args)

    storage.client.meta.events.register("before-send.s3", hook, unique_id="pause-before")


LOST: list[str] = []  # the URLs of the requests whose response lose_responses() dropped


def lose_responses(storage: S3Storage, marker: bytes) -> None:
    """Send each PutObject whose body contains ``marker`` to S3, then lose its response.

    Every retry is sent too (and answered 412, unseen), so the request fails with a
    timeout although S3 applied the first attempt.
    """
    http = urllib3.PoolManager()

    def hook(request: Any, event_name: str, **kwargs: Any) -> None:
        if not event_name.endswith(".PutObject"):
            return
        body = request.body.read() if hasattr(request.body, "read") else request.body
        if hasattr(request.body, "seek"):
            request.body.seek(0)
        if marker not in (body or b""):
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() != "expect"}
        http.request(request.method, request.url, body=body, headers=headers)
        LOST.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3", hook, unique_id="lose-responses")


def open_cache(args: dict[str, Any], **config: Any) -> tuple[Any, FileCache]:
    client = boto3.client("s3", endpoint_url=args["url"])
    storage = S3Storage(
        args["bucket"],
        prefix=args.get("prefix", "cache/"),
        endpoint_url=args["url"],
        host_id=args["host"],
        lease_ttl=args.get("ttl", 2.0),
        delete_delay=0.05,
        config=Config(retries={"max_attempts": args["retries"]}) if "retries" in args else None,
    )
    if "pause_at" in args:
        pause_before(storage, args)
    if "lose_responses" in args:
        lose_responses(storage, args["lose_responses"].encode())
    config.setdefault("evict_above", 10**9)
    config.setdefault("interval", args.get("interval", 3600))
    config.setdefault("lock_timeout", args.get("lock_timeout", 600.0))
    if "log" in args:
        config.setdefault("observer", EventLog(args["log"]))
    return client, FileCache(storage=storage, config=CacheManagerConfig(**config))


def write_parts(client: Any, path: str, key: str, args: dict[str, Any]) -> None:
    """Write the model's files one by one (``parts`` of them, the same names on every
    host), each telling which host wrote it."""
    bucket, base = split(path)
    for n in range(args.get("parts", 3)):
        body = f"{args['host']} {key} {n}".encode()
        client.put_object(Bucket=bucket, Key=f"{base}/part-{n}", Body=body)
        if n == 0 and args.get("pause_in_fill"):
            pause_here(args)


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
    """Open each key; fill the new ones; report which were new, and what raised.

    With ``parts``, a model is that many small files named after this host (written one
    by one, with a pause after the first under ``pause_in_fill``); otherwise a data file
    and its manifest. ``linger`` keeps each context open that many seconds.
    """
    client, cache = open_cache(args)
    new: dict[str, bool] = {}
    errors: dict[str, str] = {}
    with cache:
        for key in args["keys"]:
            try:
                with cache.model(key) as model:
                    new[key] = model.new
                    if model.new and "parts" in args:
                        write_parts(client, model.path, key, args)
                    elif model.new:
                        write_model(client, model.path, key, args.get("size", 1000))
                    time.sleep(args.get("linger", 0.0))
            except Exception as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
    if "lose_responses" in args:
        return {"new": new, "errors": errors, "lost": len(LOST)}
    return {"new": new, "errors": errors}


def listing(client: Any, path: str) -> dict[str, str]:
    """The files of the model at ``path``: name -> content."""
    bucket, base = split(path)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base + "/")
    names = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {
        name[len(base) + 1 :]: client.get_object(Bucket=bucket, Key=name)["Body"].read().decode()
        for name in names
    }


def watch(args: dict[str, Any]) -> dict[str, Any]:
    """Hold one model open, reading its files again and again until ``stop`` appears.

    Reports the files seen first, every change seen later, and what the context raised
    when it closed (a lapsed pin raises PinLostError).
    """
    client, cache = open_cache(args)
    changes: list[str] = []
    error = None
    with cache:
        try:
            with cache.model(args["key"]) as model:
                first = listing(client, model.path)
                append_line(args["ready"], str(os.getpid()))
                while not Path(args["stop"]).exists():
                    time.sleep(0.1)
                    try:
                        now = listing(client, model.path)
                    except Exception as exc:
                        changes.append(f"unreadable: {exc!r}")
                        continue
                    if now != first:
                        changes.append(f"changed: {sorted(now)}")
        except Exception as exc:
            error = type(exc).__name__
    return {"files": first, "changes": changes, "error": error}


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
    """Evict down to nothing, once; report the keys evicted.

    The background cycles follow the first cache opened, whose limit is never reached:
    only the one eviction asked for here happens.
    """
    _, quiet = open_cache(args)
    with quiet:
        storage = quiet.storage
        config = CacheManagerConfig(
            evict_above=1, evict_to=0, interval=3600, observer=quiet.config.observer
        )
        with FileCache(storage=storage, config=config) as cache:
            evicted = cache.evict()
            storage.flush()
    return {"evicted": evicted}


def fork(args: dict[str, Any]) -> dict[str, Any]:
    """Lead, pin ``key`` and take a fill lock, then fork; the child uses the storage alone.

    The child reports what it saw of the parent's locks (each must look lost there) and
    does a pin and a fill of its own; the parent reports, after the child exited and a
    TTL passed, whether its own locks lived on untouched.
    """
    client, cache = open_cache(args)
    storage = cache.storage
    assert isinstance(storage, S3Storage)
    bucket, key = args["bucket"], args["key"]
    lead = storage.try_lead()
    pin = storage.pin(key)
    fill = storage.lock_fill(key + "-parent", timeout=10)
    assert lead is not None
    assert pin is not None
    report = Path(args["report"])
    pid = os.fork()
    if pid == 0:  # the child: never returns
        seen: dict[str, Any] = {}
        try:
            seen["parent_locks_lost_here"] = [lead.lost, pin.lost, fill.lost]
            for lock in (pin, fill, lead):
                lock.release()  # must not touch the parent's objects
            own = storage.pin(key)
            seen["own_pin"] = own is not None
            seen["pins_while_held"] = len(pin_keys(client, bucket))
            if own is not None:
                own.release()
            storage.flush()
            child_fill = storage.lock_fill(key + "-child", timeout=10)
            staged = storage.stage(key + "-child")
            child_bucket, base = split(staged)
            client.put_object(Bucket=child_bucket, Key=f"{base}/data.bin", Body=b"child")
            storage.publish(
                key + "-child", staged, b'{"access_count":1,"last_access":1,"created":1}'
            )
            child_fill.release()
            seen["requests"] = sum(storage.request_counts.values())
        except BaseException as exc:
            seen["error"] = repr(exc)
        report.write_text(json.dumps(seen))
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(args["ttl"])  # longer than the child lived past the fork, plus a renewal
    after: dict[str, Any] = {"child": json.loads(report.read_text())}
    after["parent_locks_lost"] = [lead.lost, pin.lost, fill.lost]
    after["pins"] = [k.rsplit("/", 1)[1] for k in pin_keys(client, bucket)]
    staged = storage.stage(key + "-parent")
    storage.publish(key + "-parent", staged, b'{"access_count":1,"last_access":1,"created":1}')
    fill.release()
    pin.release()
    lead.release()
    storage.flush()
    after["models"] = sorted(storage.iter_models())
    after["objects_left"] = [
        k
        for k in listing_keys(client, bucket)
        if ".pins/" in k or (k.endswith("/leader") and not is_vacant_object(client, bucket, k))
    ]
    return after


def pin_keys(client: Any, bucket: str) -> list[str]:
    return [k for k in listing_keys(client, bucket) if ".pins/" in k]


def listing_keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="cache/")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def touch(args: dict[str, Any]) -> None:
    """Open one model many times, writing the accesses behind every ``interval``."""
    client, cache = open_cache(args)
    with cache:
        for _ in range(args["times"]):
            with cache.model(args["key"]) as model:
                if model.new:
                    write_model(client, model.path, args["key"], 100)
            time.sleep(args.get("pause", 0.0))


MODES = {
    "lead": lead,
    "hold": hold,
    "fill": fill,
    "read": read,
    "evict": evict,
    "touch": touch,
    "watch": watch,
    "fork": fork,
}


def main() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a stuck worker's stacks
    mode, raw = sys.argv[1], sys.argv[2]
    result = MODES[mode](json.loads(raw))
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
