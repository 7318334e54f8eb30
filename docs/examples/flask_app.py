"""A Flask server that serves post-processed results from a FileCache.

Run it with ``gunicorn -c gunicorn.conf.py flask_app:app``, with or without ``--preload``.
"""

import os
from pathlib import Path

from flask import Flask, jsonify
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from vcti.filecache import CacheManagerConfig, FileCache, KeyValidationError
from vcti.filecache.observers import PrometheusObserver

# Opened once per process, at import. With --preload that is in gunicorn's master, and
# each forked worker gets a manager of its own; without it, each worker opens its own.
config = CacheManagerConfig(evict_above=50 * 1024**3, observer=PrometheusObserver())
cache = FileCache(root=os.environ.get("FILECACHE_ROOT", "cache"), config=config).open()

app = Flask(__name__)


def extract(key, folder):
    """Stands in for the expensive post-processing of the simulation ``key``."""
    Path(folder, "mesh.vtu").write_text(f"<mesh of {key}>\n")


@app.get("/models/<path:key>/mesh")
def mesh(key):
    with cache.model(key) as model:  # a malformed key raises KeyValidationError here
        if model.new:
            extract(key, model.path)
        # Read inside the block: a model is protected from eviction only while it is open.
        data = Path(model.path, "mesh.vtu").read_bytes()
    return data, {"Content-Type": "model/vtu"}


@app.errorhandler(KeyValidationError)
def bad_key(error):
    return jsonify(error=str(error)), 400


@app.get("/healthz")
def healthz():
    running = cache.manager.is_running  # this worker's background manager
    return jsonify(pid=os.getpid(), manager_running=running), 200 if running else 503


# /metrics: with PROMETHEUS_MULTIPROC_DIR set, the merged values of every worker.
registry = REGISTRY
if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": make_wsgi_app(registry)})
