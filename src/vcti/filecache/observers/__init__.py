"""Observers: receive cache events and export or record them.

The exporters are imported on first use, so ``import vcti.filecache`` never imports
prometheus_client, OpenTelemetry or structlog. :class:`TraceObserver` records the
requests for ``filecache replay``, and :class:`StatsObserver` counts hits, misses, fills
and evictions in process, both with the standard library alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import CacheObserver, LoggingObserver
from .stats import CacheStats, StatsObserver

if TYPE_CHECKING:
    from .otel import OpenTelemetryObserver
    from .prometheus import PrometheusObserver, start_metrics_server
    from .structlog import StructlogObserver
    from .trace import TraceObserver

__all__ = [
    "CacheObserver",
    "CacheStats",
    "LoggingObserver",
    "OpenTelemetryObserver",
    "PrometheusObserver",
    "StatsObserver",
    "StructlogObserver",
    "TraceObserver",
    "start_metrics_server",
]

_LAZY = {
    "OpenTelemetryObserver": ".otel",
    "PrometheusObserver": ".prometheus",
    "StructlogObserver": ".structlog",
    "TraceObserver": ".trace",
    "start_metrics_server": ".prometheus",
}


def __getattr__(name: str) -> object:
    """Import an exporter the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
