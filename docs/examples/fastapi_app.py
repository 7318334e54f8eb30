"""A FastAPI server that serves post-processed results from a FileCache, with amodel().

Run it with ``uvicorn fastapi_app:app --workers 4``.
"""

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from vcti.filecache import CacheManagerConfig, FileCache, KeyValidationError
from vcti.filecache.observers import PrometheusObserver

config = CacheManagerConfig(evict_above=50 * 1024**3, observer=PrometheusObserver())


@asynccontextmanager
async def lifespan(app):
    # Each uvicorn worker runs the lifespan: one cache, and one manager, per worker.
    async with FileCache(root=os.environ.get("FILECACHE_ROOT", "cache"), config=config) as cache:
        app.state.cache = cache
        yield
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # uvicorn has no hook for a worker's exit, as gunicorn's child_exit: the worker
        # drops its own live gauges as it stops.
        multiprocess.mark_process_dead(os.getpid())


app = FastAPI(lifespan=lifespan)


def extract(key, folder):
    """Stands in for the expensive post-processing of the simulation ``key``."""
    Path(folder, "mesh.vtu").write_text(f"<mesh of {key}>\n")
    Path(folder, "field.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB


@app.get("/models/{key:path}/mesh")
async def mesh(key: str, request: Request):
    async with request.app.state.cache.amodel(key) as model:  # waits off the event loop
        if model.new:
            await asyncio.to_thread(extract, key, model.path)
        # Read inside the block: a model is protected from eviction only while it is open.
        data = await asyncio.to_thread(Path(model.path, "mesh.vtu").read_bytes)
    return Response(data, media_type="model/vtu")


@app.get("/models/{key:path}/field")
async def field(key: str, request: Request):
    async with request.app.state.cache.amodel(key) as model:
        if model.new:
            await asyncio.to_thread(extract, key, model.path)
        # A large file: open it inside the block and stream it after. An open file stays
        # readable to its end even if the model is evicted meanwhile (local storage).
        file = await asyncio.to_thread(open, Path(model.path, "field.bin"), "rb")
    return StreamingResponse(chunks(file), media_type="application/octet-stream")


def chunks(file):
    with file:
        while chunk := file.read(256 * 1024):
            yield chunk


@app.exception_handler(KeyValidationError)
async def bad_key(request: Request, error: KeyValidationError):
    return JSONResponse({"detail": str(error)}, status_code=400)


@app.get("/healthz")
async def healthz(request: Request):
    running = request.app.state.cache.manager.is_running  # this worker's manager
    return JSONResponse({"pid": os.getpid(), "manager_running": running}, 200 if running else 503)


@app.get("/metrics")
def metrics():
    # With PROMETHEUS_MULTIPROC_DIR set, the merged values of every worker.
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
