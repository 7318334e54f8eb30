"""``filecache demo``: a small server that shows the cache at work, with its own load.

It serves derived data of synthetic simulation models (``/models/{id}/summary`` and
``/models/{id}/field``), caching each model's extracted directory through
:class:`~vcti.filecache.FileCache`, with Prometheus metrics on ``/metrics``, spans
(OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set) and JSON structlog events.
"""

from __future__ import annotations

import sys
from typing import IO

from ._settings import DemoSettings

__all__ = ["DemoSettings", "run_demo"]


def run_demo(settings: DemoSettings, out: IO[str] = sys.stderr) -> int:
    """Run the demo until ``settings.duration`` passes or a stop signal; return the status.

    Ctrl-C (SIGINT) returns 130, SIGTERM 0, SIGHUP 129, the end of the duration 0; a
    temporary work folder is removed in every case.

    The exporters' libraries are imported here, not when the package is imported.
    """
    from ._server import run_demo as run

    return run(settings, out)
