"""gunicorn's settings for flask_app.py: several workers, and metrics merged across them."""

import os

from prometheus_client import multiprocess

bind = "127.0.0.1:8000"
workers = 4


def child_exit(server, worker):
    """A worker exited: drop its live gauges (``filecache_manager_leader``...) from /metrics."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(worker.pid)
