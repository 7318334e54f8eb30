"""``amodel()`` and ``async with FileCache`` under a real ASGI app (Starlette, httpx).

The app serves a model's file from the cache; a slow extraction fills it. The tests check
that concurrent requests for one missing model cause one fill, that the event loop keeps
serving while a fill runs, that cancellation at each await point releases everything,
and that the ``filecache.model`` span is a child of the request's span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from vcti.filecache import CacheManagerConfig, FileCache, KeyValidationError, LockTimeoutError
from vcti.filecache.observers import OpenTelemetryObserver
from vcti.filecache.testing import RecordingObserver

from .helpers import lines, spawn, wait_for


class Extraction:
    """A slow extraction that can be held at will, and counted."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.runs = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, path: str, key: str) -> None:
        self.runs += 1
        self.started.set()
        time.sleep(self.seconds)
        self.release.wait(30)
        Path(path, "summary.json").write_text(json.dumps({"key": key}))


def make_app(cache: FileCache, extract: Extraction, tracer: Any = None) -> Starlette:
    async def summary(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            async with cache.amodel(key) as model:
                if model.new:
                    await asyncio.to_thread(extract, model.path, key)
                files = sorted(os.listdir(model.path))  # read inside the block
        except KeyValidationError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return JSONResponse({"key": key, "files": files})

    async def traced(request: Request) -> Response:
        with tracer.start_as_current_span("GET /traced"):
            return await summary(request)

    async def ping(request: Request) -> Response:
        return PlainTextResponse("pong")

    return Starlette(
        routes=[
            Route("/models/{key:path}", summary),
            Route("/traced/{key:path}", traced),
            Route("/ping", ping),
        ]
    )


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


def config(**kwargs: Any) -> CacheManagerConfig:
    kwargs.setdefault("evict_above", 10**9)
    kwargs.setdefault("interval", 3600.0)
    kwargs.setdefault("prompt_eviction", False)
    return CacheManagerConfig(**kwargs)


def staging(root: Path) -> list[str]:
    return os.listdir(root / ".filecache" / "staging")


def test_concurrent_requests_for_one_missing_model_cause_one_fill(tmp_path: Path) -> None:
    extract = Extraction(seconds=0.5)
    recorder = RecordingObserver()

    async def main() -> None:
        async with FileCache(config(observer=recorder), root=tmp_path) as cache:
            async with client_for(make_app(cache, extract)) as client:
                responses = await asyncio.gather(
                    *(client.get("/models/runs/42") for _ in range(30))
                )
                assert {r.status_code for r in responses} == {200}
                assert {r.json()["key"] for r in responses} == {"runs/42"}
                assert all("summary.json" in r.json()["files"] for r in responses)
                bad = await client.get("/models/a/.filecache/b")  # a reserved name
                assert bad.status_code == 400
            assert cache.verify().ok
            (entry,) = cache.entries()
            assert entry.access_count == 30

    asyncio.run(main())
    assert extract.runs == 1
    hits = [hit for _, hit in recorder.calls("on_access")]
    assert hits.count(False) == 1
    assert hits.count(True) == 29
    # The malformed key never got as far as a lookup: 30 opens, each closed.
    assert len(recorder.calls("on_model_open")) == len(recorder.calls("on_model_close")) == 30


def test_the_loop_keeps_serving_while_a_fill_runs(tmp_path: Path) -> None:
    extract = Extraction(seconds=2.0)
    lags: list[float] = []

    async def watch(stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - started - 0.01)

    async def main() -> None:
        async with FileCache(config(), root=tmp_path) as cache:
            app = make_app(cache, extract)
            async with client_for(app) as client:
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch(stop))
                fills = [asyncio.create_task(client.get("/models/slow")) for _ in range(5)]
                await asyncio.to_thread(extract.started.wait, 10)
                pings = 0
                while not all(f.done() for f in fills):
                    assert (await client.get("/ping")).text == "pong"
                    pings += 1
                    await asyncio.sleep(0.05)
                stop.set()
                await watcher
                assert pings >= 10  # served all along the 2 s fill
                assert all(f.result().status_code == 200 for f in fills)

    asyncio.run(main())
    assert max(lags) < 0.5, f"the event loop was blocked for {max(lags):.3f} s"


@pytest.mark.parametrize("where", ["waiting-here", "filling", "waiting-another-process"])
def test_cancellation_releases_everything(tmp_path: Path, where: str) -> None:
    extract = Extraction()
    extract.release.clear()  # the fill holds until told
    ready = tmp_path / "ready"
    recorder = RecordingObserver()
    other = None
    if where == "waiting-another-process":
        other = spawn("fill_outcome", root=str(tmp_path), ready=str(ready), key="k", seconds=1.5)
        wait_for(lambda: len(lines(ready)) == 1)

    async def main() -> None:
        async with FileCache(config(observer=recorder, lock_timeout=30.0), root=tmp_path) as cache:
            async with client_for(make_app(cache, extract)) as client:
                first = asyncio.create_task(client.get("/models/k"))
                if where == "waiting-here":
                    await asyncio.to_thread(extract.started.wait, 10)
                    victim = asyncio.create_task(client.get("/models/k"))
                    await asyncio.sleep(0.3)  # waiting on the loop for the fill
                    victim.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await victim
                    extract.release.set()
                    assert (await first).status_code == 200
                elif where == "filling":
                    await asyncio.to_thread(extract.started.wait, 10)
                    first.cancel()  # while the body runs the extraction
                    with pytest.raises(asyncio.CancelledError):
                        await first
                    extract.release.set()
                    wait_for(lambda: staging(tmp_path) == [])  # the fill was discarded
                    assert cache.get_entry("k") is None
                else:
                    await asyncio.sleep(0.5)  # waiting for the other process's fill
                    first.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await first
                    extract.release.set()
                # Nothing leaked: the key opens at once, and the root checks clean.
                again = await asyncio.wait_for(client.get("/models/k"), 20)
                assert again.status_code == 200
            assert cache.verify().ok
            assert staging(tmp_path) == []

    asyncio.run(main())
    if other is not None:
        other.communicate(timeout=60)
    opens = len(recorder.calls("on_model_open"))
    assert opens == len(recorder.calls("on_model_close"))


def test_cancel_at_every_await_point(tmp_path: Path) -> None:
    """Cancel a request after 0, 1, 2, ... loop iterations; every run leaves a clean root."""
    extract = Extraction(seconds=0.05)

    async def main() -> None:
        async with FileCache(config(lock_timeout=30.0), root=tmp_path) as cache:
            async with client_for(make_app(cache, extract)) as client:
                for steps in range(0, 40, 3):
                    key = f"m/{steps}"
                    task = asyncio.create_task(client.get(f"/models/{key}"))
                    for _ in range(steps):
                        await asyncio.sleep(0)
                    await asyncio.sleep(0.001 * steps)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    again = await asyncio.wait_for(client.get(f"/models/{key}"), 20)
                    assert again.status_code == 200
            await asyncio.to_thread(lambda: wait_for(lambda: staging(tmp_path) == []))
            report = await asyncio.to_thread(cache.verify)
            assert report.ok, report.problems

    asyncio.run(main())


def test_the_model_span_is_a_child_of_the_request_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    observer = OpenTelemetryObserver(tracer_provider=provider)

    async def main() -> None:
        async with FileCache(config(observer=observer), root=tmp_path) as cache:
            app = make_app(cache, Extraction(), tracer)
            async with client_for(app) as client:
                assert (await client.get("/traced/a")).status_code == 200
                assert (await client.get("/traced/a")).status_code == 200

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.name == "GET /traced"]
    models = [s for s in spans if s.name == "filecache.model"]
    assert len(requests) == len(models) == 2
    for request, model in zip(requests, models, strict=True):
        assert model.parent is not None
        assert model.parent.span_id == request.context.span_id
    assert [m.attributes["filecache.hit"] for m in models] == [False, True]
    provider.shutdown()


def test_amodel_is_for_async_with_only(tmp_path: Path) -> None:
    with FileCache(config(), root=tmp_path) as cache:
        with pytest.raises(TypeError, match="async with"), cache.amodel("k"):
            pass

        async def fill() -> bool:
            async with cache.amodel("k") as model:
                return bool(model.new)

        assert asyncio.run(fill()) is True


def test_a_timeout_while_waiting_on_the_loop(tmp_path: Path) -> None:
    extract = Extraction()
    extract.release.clear()

    async def main() -> None:
        async with FileCache(config(lock_timeout=0.5), root=tmp_path) as cache:
            app = make_app(cache, extract)
            async with client_for(app) as client:
                first = asyncio.create_task(client.get("/models/k"))
                await asyncio.to_thread(extract.started.wait, 10)
                with pytest.raises(LockTimeoutError):
                    async with cache.amodel("k"):
                        pass
                extract.release.set()
                assert (await first).status_code == 200

    asyncio.run(main())


UVICORN_APP = """
import asyncio, contextlib, os
from pathlib import Path
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from vcti.filecache import CacheManagerConfig, FileCache

cache = FileCache(CacheManagerConfig(evict_above=10**9, interval=0.1), root=os.environ["ROOT"])


@contextlib.asynccontextmanager
async def lifespan(app):
    async with cache:  # opened in each worker, off the event loop
        yield


async def summary(request):
    async with cache.amodel("m") as model:
        if model.new:
            await asyncio.sleep(0.3)
            Path(model.path, "data.bin").write_bytes(b"x")
        body = Path(model.path, "data.bin").read_bytes()
    return Response(f"{os.getpid()} {body.decode()}")


app = Starlette(routes=[Route("/", summary)], lifespan=lifespan)
"""


def test_uvicorn_with_several_workers(tmp_path: Path) -> None:
    import socket
    import urllib.request

    (tmp_path / "app.py").write_text(UVICORN_APP)
    root = tmp_path / "cache"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors = (tmp_path / "uvicorn.err").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "app:app", "--workers", "2",
            "--host", "127.0.0.1", "--port", str(port),
        ],
        cwd=tmp_path,
        env={**os.environ, "ROOT": str(root), "PYTHONPATH": str(tmp_path)},
        stderr=errors,
    )  # fmt: skip
    try:
        pids: set[str] = set()
        served = 0
        deadline = time.monotonic() + 60
        while served < 20:
            assert time.monotonic() < deadline, (tmp_path / "uvicorn.err").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    pid, body = r.read().decode().split()
            except OSError:
                time.sleep(0.1)
                continue
            assert body == "x"
            pids.add(pid)
            served += 1
        meta = root / "m" / ".filecache" / "meta.json"
        wait_for(lambda: json.loads(meta.read_bytes())["access_count"] == served)
    finally:
        server.terminate()
        server.wait(timeout=30)
        errors.close()
