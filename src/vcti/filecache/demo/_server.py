"""The demo: an HTTP server that caches extracted simulation data, and its own load."""

from __future__ import annotations

import bisect
import http.client
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TextIO

import structlog
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .. import __version__
from .._cache import FileCache
from .._config import CacheManagerConfig
from .._entry import CacheSnapshot, EvictionResult
from .._sizes import format_size
from ..cli._common import POLICIES
from ..observers.base import CacheObserver
from ..observers.otel import OpenTelemetryObserver
from ..observers.prometheus import PrometheusObserver
from ..observers.structlog import StructlogObserver
from ..observers.trace import TraceObserver
from ..storage.base import CacheStorage
from ..storage.local import LocalStorage
from ._data import extract, input_path
from ._rotating import RotatingFile
from ._settings import DemoSettings

_ROUTE = re.compile(r"^/models/(\d{1,9})/(summary|field)$")


class DemoStats(CacheObserver):
    """Counts what the progress line shows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.lookups = self.hits = self.evictions = self.errors = 0
        self.size = 0
        self.entries = 0

    def on_access(self, key: str, hit: bool) -> None:
        with self.lock:
            self.lookups += 1
            self.hits += hit

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        self.size, self.entries = snapshot.total_size, snapshot.entry_count

    def on_evict_end(self, result: EvictionResult) -> None:
        with self.lock:
            self.evictions += len(result.entries)
            self.size -= result.bytes_freed  # the next scan is an interval away
            self.entries -= len(result.entries)

    def on_error(self, error: Exception, context: str) -> None:
        with self.lock:
            self.errors += 1


class LocalFiles:
    """Model files on a local filesystem: ``ModelDir.path`` is a directory."""

    def write(self, folder: str, name: str, data: bytes) -> None:
        """Write one file of a model."""
        Path(folder, name).write_bytes(data)

    def read(self, folder: str, name: str) -> bytes:
        """Read one file of a model."""
        return Path(folder, name).read_bytes()


class S3Files:
    """Model files in S3: ``ModelDir.path`` is ``s3://BUCKET/PREFIX/KEY``, files below it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def _where(uri: str, name: str) -> tuple[str, str]:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return bucket, f"{prefix}/{name}"

    def write(self, folder: str, name: str, data: bytes) -> None:
        """Write one file of a model (one PutObject)."""
        bucket, key = self._where(folder, name)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def read(self, folder: str, name: str) -> bytes:
        """Read one file of a model (one GetObject)."""
        bucket, key = self._where(folder, name)
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


def files_for(storage: object) -> LocalFiles | S3Files:
    """How the demo reads and writes model files on ``storage``."""
    if str(getattr(storage, "root", "")).startswith("s3://"):
        return S3Files(getattr(storage, "client"))  # noqa: B009
    return LocalFiles()


def make_storage(spec: str | None, work: Path) -> CacheStorage:
    """The demo's storage: ``WORK/cache`` on disk, or ``s3://BUCKET/PREFIX``.

    For S3 the endpoint, region and credentials come from boto3's usual environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` ...), as in docker-compose.yml.
    """
    if spec is None or spec == "local":
        return LocalStorage(work / "cache")
    if not spec.startswith("s3://"):
        raise ValueError(f"storage must be 'local' or s3://BUCKET/PREFIX, got {spec!r}")
    from ..storage.s3 import S3Storage

    bucket, _, prefix = spec.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Storage(bucket, prefix)


def model_key(model_id: int) -> str:
    """The cache key of a model: spread over folders, as real servers do."""
    return f"models/{model_id // 100:04d}/model_{model_id:05d}"


class DemoApp:
    """Serves ``/models/{id}/summary``, ``/models/{id}/field``, ``/metrics``, ``/healthz``."""

    def __init__(
        self, cache: FileCache, inputs: Path, settings: DemoSettings, registry: CollectorRegistry
    ) -> None:
        self.cache = cache
        self.inputs = inputs
        self.settings = settings
        self.registry = registry
        self.tracer = trace.get_tracer("vcti.filecache.demo", __version__)
        self.log = structlog.get_logger("vcti.filecache.demo")
        self.requests = 0
        self._lock = threading.Lock()
        self.files = files_for(cache.storage)

    def handle(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        """Answer one GET: (status, content type, body, extra headers)."""
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry), {}
        if path == "/healthz":
            return 200, "text/plain", b"ok\n", {}
        if path == "/":
            text = "GET /models/{id}/summary, /models/{id}/field, /metrics, /healthz\n"
            return 200, "text/plain", text.encode(), {}
        match = _ROUTE.match(path)
        if match is None:
            return 404, "text/plain", b"not found\n", {}
        model_id, kind = int(match.group(1)), match.group(2)
        if model_id >= self.settings.models:
            return 404, "text/plain", f"no model {model_id}\n".encode(), {}
        with self._lock:
            self.requests += 1
        with self.tracer.start_as_current_span(
            f"GET /models/{{id}}/{kind}", kind=trace.SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.path", path)
            body, hit = self._serve(model_id, kind)
            span.set_attribute("http.response.status_code", 200)
        content = "application/json" if kind == "summary" else "application/octet-stream"
        return 200, content, body, {"X-Cache": "hit" if hit else "miss"}

    def _serve(self, model_id: int, kind: str) -> tuple[bytes, bool]:
        with self.cache.model(model_key(model_id)) as model:
            if model.new:
                source = input_path(self.inputs, model_id)
                derived = extract(
                    source, cost=self.settings.parse_cost, field_bytes=self.settings.field_bytes
                )
                for name, data in derived.items():
                    self.files.write(model.path, name, data)
            name = "summary.json" if kind == "summary" else "field.bin"
            return self.files.read(model.path, name), not model.new


def _handler(app: DemoApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"filecache-demo/{__version__}"

        def do_GET(self) -> None:
            try:
                status, content_type, body, headers = app.handle(self.path.split("?", 1)[0])
            except Exception as exc:
                app.log.exception("demo.request.failed", path=self.path, error=repr(exc))
                status, content_type, body, headers = 500, "text/plain", b"error\n", {}
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def handle(self) -> None:
            try:
                super().handle()
            except ConnectionError:
                # The client went away mid-response (closed the tab, a timeout, Ctrl-C of
                # curl): nothing to report, and no traceback on the demo's terminal.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests show in metrics, spans and the progress line

    return Handler


class LoadGenerator:
    """Client threads requesting models with a Zipf-like popularity."""

    def __init__(self, host: str, port: int, settings: DemoSettings) -> None:
        self.host, self.port, self.settings = host, port, settings
        weights = [1.0 / (rank**settings.zipf) for rank in range(1, settings.models + 1)]
        total = sum(weights)
        self._cumulative = []
        running = 0.0
        for weight in weights:
            running += weight / total
            self._cumulative.append(running)
        # Popular models are scattered over the id range, not the lowest ids.
        self._ids = list(range(settings.models))
        random.Random(0).shuffle(self._ids)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.failures = 0

    def start(self) -> None:
        for n in range(self.settings.clients):
            thread = threading.Thread(target=self._run, args=(n,), name=f"demo-client-{n}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while not self._stop.is_set():
            rank = bisect.bisect_left(self._cumulative, rng.random())
            model_id = self._ids[min(rank, len(self._ids) - 1)]
            kind = "summary" if rng.random() < 0.7 else "field"
            try:
                conn.request("GET", f"/models/{model_id}/{kind}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self._stop.wait(0.1)
        conn.close()


def progress_line(app: DemoApp, stats: DemoStats, settings: DemoSettings) -> str:
    """One line: requests, hit ratio, size/limit, models, evictions, errors."""
    with stats.lock:
        ratio = stats.hits / stats.lookups if stats.lookups else 0.0
        return (
            f"requests {app.requests:>7} | hit ratio {ratio:6.1%} | "
            f"size {format_size(stats.size)} / {format_size(settings.evict_above)} | "
            f"models {stats.entries:>4} | evictions {stats.evictions:>5} | errors {stats.errors}"
        )


def _setup_tracing(mode: str, spans_file: Path, max_bytes: int, out: IO[str]) -> Callable[[], None]:
    """Install an SDK tracer provider for the demo; return its shutdown function."""
    if mode == "off":
        return lambda: None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        print("tracing off: install 'vcti-file-cache[demo]' for spans", file=out)
        return lambda: None
    provider = TracerProvider(resource=Resource.create({"service.name": "filecache-demo"}))
    if mode == "otlp" or (mode == "auto" and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            print("tracing off: install 'vcti-file-cache[demo]' for OTLP", file=out)
            return lambda: None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        print(
            "spans: OTLP to " + os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "default"), file=out
        )
    else:
        stream = RotatingFile(spans_file, max_bytes)
        exporter = ConsoleSpanExporter(
            out=stream,  # type: ignore[arg-type]  # it only calls write() and flush()
            formatter=lambda span: span.to_json(indent=None) + "\n",  # one span a line
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        print(f"spans: {spans_file} (rotated at {format_size(max_bytes)})", file=out)

        def shutdown() -> None:
            provider.shutdown()
            stream.close()

        trace.set_tracer_provider(provider)
        return shutdown
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _setup_logging(log_file: str, max_bytes: int, out: IO[str]) -> Callable[[], None]:
    """Configure structlog for the demo application: JSON lines with trace ids."""
    from ..observers.structlog import add_trace_ids

    stream: TextIO | RotatingFile = (
        sys.stderr if log_file == "-" else RotatingFile(log_file, max_bytes)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_trace_ids,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    if log_file != "-":
        print(f"events: {log_file} (rotated at {format_size(max_bytes)})", file=out)
    return (lambda: None) if stream is sys.stderr else stream.close


@contextmanager
def _workdir(root: Path | None) -> Iterator[Path]:
    """``root``, created if needed; or a temporary folder, removed however the demo ends."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    path = Path(tempfile.mkdtemp(prefix="filecache-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: The signals that stop the demo, what it says, and its exit status for each (128 + the
#: signal, as a shell reports it, except SIGTERM: a requested stop, `docker stop`, is a
#: success).
_STOPS: dict[int, tuple[str, int]] = {
    signal.SIGINT: ("interrupted", 128 + signal.SIGINT),
    signal.SIGTERM: ("terminated", 0),
    signal.SIGHUP: ("hung up", 128 + signal.SIGHUP),
}


def run_demo(settings: DemoSettings, out: IO[str] = sys.stderr) -> int:
    """Run the demo until ``settings.duration`` passes or a stop signal; return the status.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop it cleanly: the load and the server stop, the
    cache closes and a temporary work folder is removed. They are taken synchronously
    (``sigtimedwait``) rather than by handlers, so that a second Ctrl-C cannot interrupt
    the stop half-way; signals that come while it stops are dropped. They are blocked
    before any thread starts, so that every thread inherits the mask.
    """
    stops = frozenset(_STOPS)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        with _workdir(settings.root) as work:
            received = _run(settings, work, out)
    finally:
        while signal.sigtimedwait(stops, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return 0 if received is None else _STOPS[received][1]


def _run(settings: DemoSettings, work: Path, out: IO[str]) -> int | None:
    """Run the demo in ``work``; return the stop signal received, or None."""
    inputs = work / "inputs"
    inputs.mkdir(exist_ok=True)
    max_bytes = settings.log_max_bytes
    stop_tracing = _setup_tracing(settings.tracing, work / "spans.jsonl", max_bytes, out)
    close_log = _setup_logging(settings.log_file or str(work / "events.jsonl"), max_bytes, out)
    registry = CollectorRegistry(auto_describe=True)
    stats = DemoStats()
    observers: list[CacheObserver] = [
        PrometheusObserver(registry=registry, cache_name="demo"),
        OpenTelemetryObserver(),
        StructlogObserver(),
        stats,
    ]
    # Not rotated: `filecache replay FILE` then replays the whole run (a day of the default
    # load is a few hundred MB; a rotated trace would need --concat and could lose its start).
    recorder = None if settings.trace is None else TraceObserver(settings.trace, max_bytes=None)
    if recorder is not None:
        observers.append(recorder)
        print(f"trace: {settings.trace} (for filecache replay)", file=out)
    config = CacheManagerConfig(
        evict_above=settings.evict_above,
        evict_to=settings.evict_to,
        policy=POLICIES[settings.policy](),
        interval=settings.interval,
        observer=observers,
    )
    try:
        with FileCache(storage=make_storage(settings.storage, work), config=config) as cache:
            app = DemoApp(cache, inputs, settings, registry)
            try:
                server = ThreadingHTTPServer((settings.host, settings.port), _handler(app))
            except OSError as exc:  # in use, no such address: say which
                where = f"{settings.host}:{settings.port}"
                raise OSError(exc.errno, f"cannot serve on {where}: {exc.strerror}") from None
            server.daemon_threads = True
            host, port = settings.host, server.server_port
            serving = threading.Thread(target=server.serve_forever, name="demo-http")
            serving.start()
            print(
                f"filecache demo on http://{host}:{port}  (metrics: /metrics)  "
                f"root: {cache.storage.root}",
                file=out,
                flush=True,
            )
            load = LoadGenerator("127.0.0.1" if host in ("0.0.0.0", "") else host, port, settings)
            if settings.load:
                load.start()
            try:
                received = _wait(app, stats, settings, out)
                if received is not None:
                    print(f"\n{_STOPS[received][0]}, stopping", file=out, flush=True)
            finally:
                load.stop()
                server.shutdown()
                serving.join()
                server.server_close()
            print("\n" + progress_line(app, stats, settings), file=out, flush=True)
    finally:
        if recorder is not None:
            recorder.close()
        close_log()
        stop_tracing()
    return received


def _wait(app: DemoApp, stats: DemoStats, settings: DemoSettings, out: IO[str]) -> int | None:
    """Show progress until the duration passes (None) or a stop signal comes (its number)."""
    deadline = None if settings.duration is None else time.monotonic() + settings.duration
    tty = out.isatty()
    last_plain = 0.0
    while True:
        timeout = 0.5
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                return None
        info = signal.sigtimedwait(_STOPS, timeout)
        if info is not None:
            return info.si_signo
        if not settings.progress:
            continue
        if tty:
            print("\r" + progress_line(app, stats, settings), end="", file=out, flush=True)
        elif time.monotonic() - last_plain >= 10:
            last_plain = time.monotonic()
            print(progress_line(app, stats, settings), file=out, flush=True)


def settings_json(settings: DemoSettings) -> str:
    """The settings as JSON (shown by ``--print-settings``)."""
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()}
    return json.dumps(values, indent=2)
