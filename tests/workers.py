"""Worker processes for the multi-process tests: ``python -m tests.workers MODE ARGS_JSON``.

Each model a worker fills holds ``data.bin`` (content derived from the key, written in
chunks) and ``manifest.json`` (its size and digest, written last), so a reader can tell a
complete model from a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vcti.filecache import CacheManagerConfig, CacheObserver, EvictionResult, FileCache
from vcti.filecache.observers import PrometheusObserver, TraceObserver


def payload(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def key_size(key: str, small: int, large: int) -> int:
    return small + int(hashlib.sha256(key.encode()).hexdigest()[:6], 16) % (large - small)


def write_model(path: str, key: str, size: int, pause: float = 0.0) -> None:
    data = payload(key, size)
    with open(os.path.join(path, "data.bin"), "wb") as f:
        for start in range(0, size, max(1, size // 4)):
            f.write(data[start : start + max(1, size // 4)])
            f.flush()
            if pause:
                time.sleep(pause)
    manifest = {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
    Path(path, "manifest.json").write_text(json.dumps(manifest))


def check_model(path: str) -> str | None:
    """Return None if the model at ``path`` is complete, else what is wrong."""
    try:
        manifest = json.loads(Path(path, "manifest.json").read_text())
        data = Path(path, "data.bin").read_bytes()
    except (OSError, ValueError) as exc:
        return f"unreadable: {exc!r}"
    if len(data) != manifest["size"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        return f"partial: {len(data)} of {manifest['size']} bytes"
    return None


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class EventLog(CacheObserver):
    """Appends evictions and leadership changes to a file shared by all workers."""

    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root

    def on_evict_end(self, result: EvictionResult) -> None:
        for entry in result.entries:
            append_line(self.path, f"evict {entry.key}")

    def on_leader_change(self, is_leader: bool) -> None:
        append_line(self.path, f"leader {os.getpid()} {int(is_leader)} {time.time()}")

    def on_error(self, error: Exception, context: str) -> None:
        append_line(self.path, f"error {context} {error!r}")


def stress(args: dict[str, Any]) -> dict[str, Any]:
    """Random opens with fills and reads under a tight budget; returns what was seen."""
    rng = random.Random(args["seed"])
    log = args["log"]
    config = CacheManagerConfig(
        evict_above=args["budget"],
        interval=args["interval"],
        observer=EventLog(log, args["root"]),
    )
    problems: list[str] = []
    fills = reads = 0
    with FileCache(root=args["root"], config=config) as cache:
        for _ in range(args["ops"]):
            # Zipf-like popularity: low indexes are opened far more often.
            key = f"m/{int(args['keys'] * rng.random() ** 2):03d}"
            try:
                with cache.model(key) as model:
                    if model.new:
                        if cache.storage.is_model(key):
                            problems.append(f"second fill of resident {key}")
                        size = key_size(key, args["small"], args["large"])
                        write_model(model.path, key, size)
                        append_line(log, f"fill {key}")
                        fills += 1
                    else:
                        problem = check_model(model.path)
                        if problem is not None:
                            problems.append(f"{key}: {problem}")
                        reads += 1
            except Exception as exc:
                problems.append(f"{key}: unexpected {exc!r}")
    return {"problems": problems, "fills": fills, "reads": reads}


def chaos(args: dict[str, Any]) -> None:
    """Fill, read and evict forever (until killed), slowly enough to be killed mid-step."""
    rng = random.Random(args["seed"])
    config = CacheManagerConfig(evict_above=args["budget"], interval=0.02)
    with FileCache(root=args["root"], config=config) as cache:
        append_line(args["ready"], str(os.getpid()))
        while True:
            key = f"k/{rng.randrange(args['keys']):02d}"
            with cache.model(key) as model:
                if model.new:
                    write_model(model.path, key, key_size(key, 2000, 60000), pause=0.002)
                elif check_model(model.path) is not None:
                    append_line(args["bad"], f"{key} {check_model(model.path)}")
            if rng.random() < 0.2:
                cache.evict()


def lead(args: dict[str, Any]) -> None:
    """Open a cache and stay (until killed), logging leadership."""
    config = CacheManagerConfig(
        evict_above=10**9, interval=args["interval"], observer=EventLog(args["log"], args["root"])
    )
    with FileCache(root=args["root"], config=config):
        append_line(args["ready"], str(os.getpid()))
        while True:
            time.sleep(1)


def hold(args: dict[str, Any]) -> None:
    """Open a model and keep it open (until killed)."""
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=args["root"], config=config) as cache, cache.model(args["key"]):
        append_line(args["ready"], str(os.getpid()))
        while True:
            time.sleep(1)


def fill_slowly(args: dict[str, Any]) -> None:
    """Fill a model slowly (a filler to kill, or to wait for)."""
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=args["root"], config=config) as cache, cache.model(args["key"]) as model:
        append_line(args["ready"], f"{os.getpid()} {int(model.new)}")
        if model.new:
            time.sleep(args["seconds"])
            write_model(model.path, args["key"], 1000)
            if args.get("fail"):
                raise RuntimeError("extraction failed")


def touch(args: dict[str, Any]) -> None:
    """Open one model many times."""
    config = CacheManagerConfig(evict_above=10**9, interval=args.get("interval", 3600))
    with FileCache(root=args["root"], config=config) as cache:
        for _ in range(args["times"]):
            with cache.model(args["key"]) as model:
                if model.new:
                    write_model(model.path, args["key"], 100)


def fill_outcome(args: dict[str, Any]) -> dict[str, Any]:
    """Fill a model, taking ``seconds``; report whether it was published, or the error."""
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=args["root"], config=config) as cache:
        try:
            with cache.model(args["key"]) as model:
                append_line(args["ready"], f"{os.getpid()} {int(bool(model.new))}")
                time.sleep(args["seconds"])
                write_model(model.path, args["key"], 100)
        except Exception as exc:
            return {"published": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"published": True, "error": None}


def fill_evict_loop(args: dict[str, Any]) -> dict[str, Any]:
    """Fill a model of one's own and evict everything, ``times`` times; report the errors."""
    config = CacheManagerConfig(evict_above=1, evict_to=0, interval=3600, prompt_eviction=False)
    errors: list[str] = []
    with FileCache(root=args["root"], config=config) as cache:
        for _ in range(args["times"]):
            try:
                with cache.model(f"g/{args['me']}") as model:
                    Path(model.path, "data.bin").write_bytes(b"xx")
                cache.evict()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    return {"errors": errors}


def publish(args: dict[str, Any]) -> dict[str, Any]:
    """Publish ``count`` models of ``size`` bytes, one every ``pause`` seconds; time each."""
    config = CacheManagerConfig(evict_above=args["limit"], interval=args["interval"])
    slowest = 0.0
    with FileCache(root=args["root"], config=config) as cache:
        for n in range(args["count"]):
            started = time.monotonic()
            with cache.model(f"{args['prefix']}/m{n}") as model:
                if model.new:
                    Path(model.path, "data.bin").write_bytes(b"p" * args["size"])
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(args["pause"])
    return {"slowest": slowest}


def lookups(args: dict[str, Any]) -> None:
    """Look up ``requests`` models of a skewed load, filling the misses; record a trace."""
    registry = CollectorRegistry()
    observers: list[CacheObserver] = [TraceObserver(args["trace"])]
    if args.get("metrics"):
        observers.append(PrometheusObserver(registry=registry, cache_name="w"))
    config = CacheManagerConfig(
        evict_above=args["limit"],
        interval=args["interval"],
        prompt_eviction=args["prompt_eviction"],
        observer=observers,
    )
    rng = random.Random(args["seed"])
    keys = [f"m{k:03d}" for k in range(args["keys"])]
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(keys))]
    with FileCache(root=args["root"], config=config) as cache:
        for key in rng.choices(keys, weights, k=args["requests"]):
            with cache.model(key) as model:
                if model.new:
                    Path(model.path, "data.bin").write_bytes(b"x" * args["sizes"][key])
            time.sleep(args["pause"])
        if args.get("metrics"):
            cache.manager.run_once()  # a cycle here too: it does not lead, sets no what-if
            Path(args["metrics"]).write_bytes(generate_latest(registry))


MODES = {
    "lookups": lookups,
    "publish": publish,
    "fill_outcome": fill_outcome,
    "fill_evict_loop": fill_evict_loop,
    "stress": stress,
    "chaos": chaos,
    "lead": lead,
    "hold": hold,
    "fill_slowly": fill_slowly,
    "touch": touch,
}


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    result = MODES[mode](json.loads(raw))
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
