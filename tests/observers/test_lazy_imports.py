"""The exporters' libraries are imported only when an exporter is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vcti.filecache import observers

EXPORTER_LIBRARIES = ("prometheus_client", "opentelemetry", "structlog")

PROBE = """
import json
import sys

def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in {libraries!r})

import vcti.filecache
after_package = loaded()
import vcti.filecache.observers
after_observers = loaded()
from vcti.filecache.observers import {name}
print(json.dumps([after_package, after_observers, loaded()]))
"""


@pytest.mark.parametrize(
    ("name", "library"),
    [
        ("PrometheusObserver", "prometheus_client"),
        ("start_metrics_server", "prometheus_client"),
        ("OpenTelemetryObserver", "opentelemetry"),
        ("StructlogObserver", "structlog"),
    ],
)
def test_importing_the_package_imports_no_exporter_library(name: str, library: str):
    import json

    code = PROBE.format(libraries=set(EXPORTER_LIBRARIES), name=name)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    after_package, after_observers, after_exporter = json.loads(result.stdout)
    assert after_package == []
    assert after_observers == []
    # The probe works: asking for the exporter imports its library.
    assert library in after_exporter


def test_all_is_sorted_and_complete():
    assert observers.__all__ == sorted(observers.__all__)
    assert set(observers.__all__) == {
        "CacheObserver",
        "CacheStats",
        "LoggingObserver",
        "OpenTelemetryObserver",
        "PrometheusObserver",
        "StatsObserver",
        "StructlogObserver",
        "TraceObserver",
        "start_metrics_server",
    }
    for name in observers.__all__:
        value = getattr(observers, name)
        assert value.__doc__, name
    assert set(observers.__all__) <= set(dir(observers))


def test_exporters_are_the_documented_objects():
    from vcti.filecache.observers.otel import OpenTelemetryObserver
    from vcti.filecache.observers.prometheus import PrometheusObserver, start_metrics_server
    from vcti.filecache.observers.structlog import StructlogObserver

    assert observers.PrometheusObserver is PrometheusObserver
    assert observers.start_metrics_server is start_metrics_server
    assert observers.OpenTelemetryObserver is OpenTelemetryObserver
    assert observers.StructlogObserver is StructlogObserver
    for cls in (PrometheusObserver, OpenTelemetryObserver, StructlogObserver):
        assert issubclass(cls, observers.CacheObserver)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        observers.Nope  # noqa: B018
