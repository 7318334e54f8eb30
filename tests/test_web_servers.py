"""The web-server examples (docs/examples/), each run in a real server on 127.0.0.1.

Flask under gunicorn with several workers, with and without ``--preload``, and FastAPI with
``amodel()`` under uvicorn with two workers; both with prometheus_client's multiprocess
metrics. docs/guide/web-servers.md quotes the example files verbatim (checked here), so
what it shows is what runs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vcti.filecache import CacheManagerConfig, FileCache

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
PAGE = REPO / "docs" / "guide" / "web-servers.md"
FILES = ["flask_app.py", "gunicorn.conf.py", "fastapi_app.py"]

FIELD = bytes(range(256)) * 4096  # what fastapi_app.extract writes to field.bin


def test_the_guide_quotes_every_example_verbatim() -> None:
    page = PAGE.read_text()
    for name in FILES:
        text = (EXAMPLES / name).read_text()
        assert f"`docs/examples/{name}`" in page, name
        assert f"```python\n{text}```\n" in page, f"the guide's copy of {name} differs"


def test_an_open_file_stays_readable_after_its_model_is_removed(tmp_path: Path) -> None:
    # What fastapi_app.field relies on: the file opened inside the block is read after it.
    config = CacheManagerConfig(evict_above=2**40, interval=3600)
    with FileCache(root=tmp_path, config=config) as cache:
        with cache.model("run/1") as model:
            Path(model.path, "field.bin").write_bytes(FIELD)
        with contextlib.ExitStack() as stack:
            with cache.model("run/1") as model:
                file = stack.enter_context(Path(model.path, "field.bin").open("rb"))
            first = file.read(1000)
            assert cache.remove("run/1")
            assert not Path(cache.storage.path("run/1")).exists()
            assert first + file.read() == FIELD


# -- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_dir: Path
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        import json

        status, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def metric(self, name: str) -> float:
        _, body = self.get("/metrics")
        return sum(
            float(line.split()[-1])
            for line in body.decode().splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def live_gauge_files(self, pid: int) -> list[str]:
        return glob.glob(str(self.metrics_dir / f"gauge_live*_{pid}.db"))

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it; return the log."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        log = self.log.read_text()
        assert self.proc.returncode == 0, log
        return log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a server from docs/examples with a fresh cache root and metrics folder."""
    started: list[Server] = []

    def start(*command: str) -> Server:
        port = free_port()
        metrics_dir = tmp_path / "metrics"  # empty at each start, as prometheus_client asks
        metrics_dir.mkdir()
        env = {
            **os.environ,
            "FILECACHE_ROOT": str(tmp_path / "cache"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        log = tmp_path / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *(arg.format(port=port) for arg in command)],
                cwd=EXAMPLES,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(proc, port, metrics_dir, log)
        started.append(server)

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return server.get("/healthz")[0] == 200
            except OSError:
                return False

        poll("the server to answer", up)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=60)


def every_worker(server: Server, count: int) -> dict[int, bool]:
    """Ask /healthz, on new connections, until ``count`` workers have answered."""
    seen: dict[int, bool] = {}

    def ask() -> bool:
        with ThreadPoolExecutor(8) as pool:
            for answer in pool.map(lambda _: server.json("/healthz"), range(16)):
                seen[answer["pid"]] = answer["manager_running"]
        return len(seen) >= count

    poll(f"{count} workers to answer", ask)
    return seen


def fetch_all(server: Server, paths: list[str]) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(server.get, paths))


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_flask_under_gunicorn(serve: Callable[..., Server], preload: bool) -> None:
    server = serve(
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "--workers",
        "3",
        "--bind",
        "127.0.0.1:{port}",
        *(["--preload"] if preload else []),
        "flask_app:app",
    )
    workers = every_worker(server, 3)
    assert len(workers) == 3
    assert server.proc.pid not in workers
    assert all(workers.values()), workers  # each worker's manager runs

    # Four models, each asked for by three requests at once, over the workers.
    keys = ["cfd/wing-a/steady", "cfd/wing-a/transient", "crash/sedan", "nvh/door"]
    paths = [f"/models/{key}/mesh" for key in keys for _ in range(3)]
    for path, (status, body) in zip(paths, fetch_all(server, paths), strict=True):
        key = path.removeprefix("/models/").removesuffix("/mesh")
        assert (status, body) == (200, f"<mesh of {key}>\n".encode())
    assert server.get("/models/.filecache/x/mesh") == (
        400,
        b"{\"error\":\"model key '.filecache/x' uses the reserved name '.filecache'\"}\n",
    )
    status, body = server.get("/models/a%5Cb/mesh")
    assert status == 400
    assert b"must not contain a backslash" in body

    # Merged over the workers: one fill per model, whichever worker served it.
    assert server.metric("filecache_lookups_total") == 12
    assert server.metric("filecache_fills_total") == 4
    assert server.metric("filecache_hits_total") == 8

    # A worker killed: gunicorn's child_exit drops its live gauges; its counts stay.
    victim = poll(
        "a worker with live gauges",
        lambda: next((pid for pid in workers if server.live_gauge_files(pid)), None),
    )
    os.kill(victim, signal.SIGKILL)
    poll("child_exit to drop the worker's live gauges", lambda: not server.live_gauge_files(victim))
    assert server.metric("filecache_lookups_total") == 12
    assert server.metric("filecache_manager_leader") <= 1
    assert all(every_worker(server, 3).values())  # the replacement's manager runs too
    server.stop()


def test_flask_metrics_show_a_fill_at_once(serve: Callable[..., Server]) -> None:
    # One worker: it leads the root, so its gauges follow its own publishes. The next
    # scan is the example's 60 s away.
    server = serve(
        "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1", "--bind", "127.0.0.1:{port}",
        "flask_app:app",
    )  # fmt: skip
    poll("the first scan", lambda: server.metric("filecache_scans_total") >= 1)
    assert server.metric("filecache_entries") == 0
    assert server.get("/models/cfd/wing-a/steady/mesh")[0] == 200
    assert server.metric("filecache_fills_total") == 1
    assert server.metric("filecache_entries") == 1
    assert server.metric("filecache_size_bytes") == len(b"<mesh of cfd/wing-a/steady>\n")
    assert server.metric("filecache_scans_total") == 1
    server.stop()


def test_fastapi_with_amodel_under_uvicorn(serve: Callable[..., Server]) -> None:
    server = serve(
        "uvicorn",
        "fastapi_app:app",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    )
    workers = every_worker(server, 2)
    assert len(workers) == 2
    assert all(workers.values()), workers

    # Ten requests at once for one missing model: one fill, ten identical answers.
    answers = fetch_all(server, ["/models/run/7/mesh"] * 10)
    assert answers == [(200, b"<mesh of run/7>\n")] * 10
    assert server.get("/models/run/7/field") == (200, FIELD)  # streamed from the open file
    status, body = server.get("/models/.filecache/x/field")
    assert status == 400
    assert b"uses the reserved name" in body
    assert server.metric("filecache_fills_total") == 1
    assert server.metric("filecache_lookups_total") == 11
    assert all(server.live_gauge_files(pid) for pid in workers)

    log = server.stop()
    assert "Application shutdown complete" in log
    # Each worker dropped its own live gauges as it stopped; the counts stay.
    assert not any(server.live_gauge_files(pid) for pid in workers)
    assert all(glob.glob(str(server.metrics_dir / f"counter_{pid}.db")) for pid in workers)
