"""PrometheusObserver: cache metrics for Prometheus, and a helper to serve them.

Metric names are a public contract (dashboards and alerts use them): every name starts
with ``filecache_``, every series has a ``cache`` label, and no label names a model.

How the metrics reach a scrape:

* One :class:`_FileCacheCollector` per registry owns the metric families. The metric
  objects themselves are created unregistered, and the collector re-exports them
  without their ``_created`` samples, so that choice does not depend on (or change)
  the process-wide ``prometheus_client.disable_created_metrics()`` switch. Every
  observer on the same registry shares those objects and holds its own ``cache``
  children, so several caches in one registry, or several registries in one process,
  never register a name twice.
* In prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before
  ``prometheus_client`` is imported) custom collectors do not work: the values are
  written to the directory and a ``MultiProcessCollector`` exports them, so nothing is
  registered and ``registry`` is not used. Counters and histograms are summed over the
  workers; each gauge has the aggregation that makes one series per cache right (see
  ``_GAUGES``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server
from prometheus_client import values as _values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .. import __version__
from .._victims import policy_name
from .._whatif import WhatIf, WhatIfSimulations, size_label
from ._totals import LiveTotals, Totals
from .base import ERROR_CONTEXTS, CacheObserver

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from .._config import CacheManagerConfig
    from .._entry import CacheSnapshot, EvictionResult
    from ..storage.base import CacheStorage, PeerRequest

__all__ = ["PrometheusObserver", "start_metrics_server"]

# Scans walk whole trees (milliseconds locally, minutes on a big network share); an
# eviction run deletes directories, which takes as long.
_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
)  # fmt: skip
# A fill post-processes a simulation: seconds to hours.
_FILL_BUCKETS = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    7200.0, 14400.0,
)  # fmt: skip
# Idle time of an evicted model: under a few minutes means the cache thrashes, days
# mean it is large enough. 1s, 10s, 1m, 5m, 15m, 30m, 1h, 3h, 6h, 12h, 1d, 2d, 4d, 1w,
# 2w, 30d, 90d.
_IDLE_BUCKETS = (
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 86400.0,
    172800.0, 345600.0, 604800.0, 1209600.0, 2592000.0, 7776000.0,
)  # fmt: skip

_GaugeMode = Literal["mostrecent", "max", "livemax", "livesum"]

# Gauges are set by each scan; in the process that scanned, a publish and an eviction run
# change size, overage and entries at once rather than an interval later (LiveTotals).
# Attribute, name, help, multiprocess mode. Why each mode:
# - the sizes are measurements of one shared root, taken by whichever worker scanned
#   last: "mostrecent" keeps the newest one (a worker that never scanned has no
#   timestamp and never wins; a recycled worker's last value stays until a newer scan).
#   The limit is set from the config and by every scan, so it pairs with the size. The
#   filesystem's free space and size are measurements of the disk under the shared root
#   too, taken with the scan: "mostrecent" as well (a sum would count one disk per worker).
# - the interval is configuration: "livemax" is the longest interval among live workers,
#   the safe bound for a "no scan for too long" alert.
# - the last successful scan is a timestamp: "max" is the latest success of any worker.
# - pins and leadership belong to a process: "livesum" adds the live workers (leader
#   must be 1; 0 means nobody manages the root, 2 would be a bug).
# The "live" modes need multiprocess.mark_process_dead(pid) when a worker exits.
_GAUGES: tuple[tuple[str, str, str, _GaugeMode], ...] = (
    ("size", "filecache_size_bytes", "Bytes in the cache, fills included.", "mostrecent"),
    ("limit", "filecache_limit_bytes", "The limit (evict_above) in bytes.", "mostrecent"),
    ("overage", "filecache_overage_bytes", "Bytes above the limit.", "mostrecent"),
    ("entries", "filecache_entries", "Models in the cache.", "mostrecent"),
    ("pinned", "filecache_pinned_entries", "Models open in the scanning process.", "livesum"),
    ("staging", "filecache_staging_bytes", "Bytes of fills in progress.", "mostrecent"),
    ("interval", "filecache_scan_interval_seconds", "Seconds between two cycles.", "livemax"),
    (
        "last_success",
        "filecache_last_scan_success_timestamp_seconds",
        "Epoch seconds at the end of the last scan without errors.",
        "max",
    ),
    ("leader", "filecache_manager_leader", "1 in the process that scans and evicts.", "livesum"),
    (
        "disk_free",
        "filecache_filesystem_free_bytes",
        "Bytes free for unprivileged users on the filesystem of the root (local storage).",
        "mostrecent",
    ),
    (
        "disk_total",
        "filecache_filesystem_size_bytes",
        "Size in bytes of the filesystem of the root (local storage).",
        "mostrecent",
    ),
)

#: The gauges that exist only for storage that can tell (the snapshot's disk_free and
#: disk_total are None elsewhere): created by the first scan that measures them, so that a
#: cache on S3 exports no series rather than a free space of 0.
_DISK_GAUGES = frozenset({"disk_free", "disk_total"})


#: The gauges left out with ``export_limit=False``.
_LIMIT_GAUGES = frozenset({"limit", "overage"})


class _Families:
    """The metric families of one registry (or of the process, in multiprocess mode)."""

    def __init__(self) -> None:
        # Unregistered (registry=None): a _FileCacheCollector exports them.
        self.gauges = {
            attr: Gauge(name, doc, ["cache"], registry=None, multiprocess_mode=mode)
            for attr, name, doc, mode in _GAUGES
        }
        # Set by the leader only, at each cycle, and removed when it stops leading:
        # "mostrecent" keeps the newest leader's.
        self.whatif = Gauge(
            "filecache_whatif_miss_ratio",
            "Share of the lookups that would miss with this policy and this size (a multiple "
            "of the limit), from the leader's miniature simulations of the lookups of every "
            "process on the root (of its own process only, on storage without a journal).",
            ["cache", "policy", "size"],
            registry=None,
            multiprocess_mode="mostrecent",
        )
        self.build_info = Gauge(
            "filecache_build_info",
            "Always 1; the labels describe the cache.",
            ["cache", "version", "storage", "policy"],
            registry=None,
            multiprocess_mode="livemax",
        )

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["cache", *labels], registry=None)

        def histogram(name: str, doc: str, buckets: Iterable[float]) -> Histogram:
            return Histogram(name, doc, ["cache"], registry=None, buckets=tuple(buckets))

        self.lookups = counter("filecache_lookups_total", "model() lookups (hits and misses).")
        self.hits = counter("filecache_hits_total", "model() lookups that found the model.")
        self.fills = counter("filecache_fills_total", "Fills that ended, published or not.")
        self.fill_failures = counter(
            "filecache_fill_failures_total", "Fills that ended without a published model."
        )
        self.evictions = counter(
            "filecache_evictions_total", "Models removed by eviction.", "policy"
        )
        self.evicted_bytes = counter(
            "filecache_evicted_bytes_total", "Bytes removed by eviction.", "policy"
        )
        self.expired = counter(
            "filecache_expired_total",
            "Models removed by eviction because they were idle for longer than max_age.",
        )
        self.scans = counter("filecache_scans_total", "Scans of the cache root.")
        self.errors = counter(
            "filecache_errors_total", "Errors reported by the cache, by where.", "context"
        )
        self.scan_duration = histogram(
            "filecache_scan_duration_seconds", "Duration of a scan.", _DURATION_BUCKETS
        )
        self.eviction_duration = histogram(
            "filecache_eviction_duration_seconds",
            "Duration of an eviction run.",
            _DURATION_BUCKETS,
        )
        self.fill_duration = histogram(
            "filecache_fill_duration_seconds",
            "Duration of a published fill (model() context of a miss).",
            _FILL_BUCKETS,
        )
        self.evicted_idle = histogram(
            "filecache_evicted_entry_idle_seconds",
            "Seconds since its last access, for each evicted model.",
            _IDLE_BUCKETS,
        )

    def metrics(self) -> Iterator[MetricWrapperBase]:
        """Every metric object, in exposition order."""
        yield from self.gauges.values()
        yield from (
            self.lookups,
            self.hits,
            self.fills,
            self.fill_failures,
            self.evictions,
            self.evicted_bytes,
            self.expired,
            self.scans,
            self.errors,
            self.scan_duration,
            self.eviction_duration,
            self.fill_duration,
            self.evicted_idle,
            self.whatif,
            self.build_info,
        )


class _FileCacheCollector(Collector):
    """Exports the families of one registry, without ``_created`` samples."""

    def __init__(self, families: _Families) -> None:
        self._families = families

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (lets the registry check names once)."""
        for metric in self._families.metrics():
            yield from metric.describe()

    def collect(self) -> Iterable[Metric]:
        """The families with their current samples."""
        for metric in self._families.metrics():
            for family in metric.collect():
                # _created is a per-series creation time: noise for these metrics, and
                # dropped here rather than with the process-wide switch.
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_process_families: list[_Families] = []  # the one set used in multiprocess mode


def _multiprocess() -> bool:
    """True when prometheus_client writes values to PROMETHEUS_MULTIPROC_DIR."""
    # Decided by prometheus_client when it was imported, not by the variable now.
    return bool(getattr(_values.ValueClass, "_multiprocess", False))


def _families_for(registry: CollectorRegistry) -> _Families:
    """Return the families of ``registry``, creating and registering them once."""
    with _lock:
        if _multiprocess():
            if not _process_families:
                _process_families.append(_Families())
            return _process_families[0]
        families = _by_registry.get(registry)
        if families is None:
            families = _Families()
            registry.register(_FileCacheCollector(families))
            _by_registry[registry] = families
        return families


@dataclass(frozen=True)
class _Bound:
    """The families and the ``cache`` label value of one attached observer."""

    families: _Families
    cache: str

    def gauge(self, attr: str) -> Gauge:
        return self.families.gauges[attr].labels(cache=self.cache)

    def count(self, counter: Counter, amount: float = 1, **labels: str) -> None:
        counter.labels(cache=self.cache, **labels).inc(amount)

    def observe(self, histogram: Histogram, value: float) -> None:
        histogram.labels(cache=self.cache).observe(value)


class PrometheusObserver(CacheObserver):
    """Exports a cache's state and events as Prometheus metrics.

    Use one observer per cache. The metrics appear when the cache opens (counters and
    gauges at 0), labelled ``cache`` with ``cache_name`` or the storage root.

    Args:
        registry: where the metrics are registered; default the global ``REGISTRY``.
            Ignored in multiprocess mode, where a ``MultiProcessCollector`` exports the
            values of every worker (see :func:`start_metrics_server`).
        cache_name: the ``cache`` label value; default the storage root.
        export_limit: set False for a cache whose limit is not enforced (one that only
            measures, as ``filecache exporter --no-evict``): ``filecache_limit_bytes`` and
            ``filecache_overage_bytes`` are then not exported for it, rather than a
            meaningless limit.
        whatif: the what-if simulations behind ``filecache_whatif_miss_ratio``: the miss
            ratio of the cache's policy (and of ``WhatIf.policies``) at other sizes, run
            and exported only while this process leads the root, at each of its cycles,
            from the lookups it serves and (on a local root) those the other processes
            record in the journal; None turns them off. Their memory is bounded by
            ``WhatIf.max_keys`` (see :class:`~vcti.filecache.replay.WhatIf`).
    """

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        cache_name: str | None = None,
        *,
        export_limit: bool = True,
        whatif: WhatIf | None = WhatIf(),  # noqa: B008 - frozen
    ) -> None:
        self.registry = registry
        self.cache_name = cache_name
        self.export_limit = export_limit
        self.whatif = whatif
        self._simulations: WhatIfSimulations | None = None
        self._leader = False
        self._bound: _Bound | None = None
        self._totals: LiveTotals | None = None
        self._local = threading.local()  # whether the scan running in this thread failed

    def __repr__(self) -> str:
        cache = self._bound.cache if self._bound is not None else self.cache_name
        return f"<PrometheusObserver cache={cache!r}>"

    def on_attach(self, storage: CacheStorage, config: CacheManagerConfig) -> None:
        bound = _Bound(_families_for(self.registry), self.cache_name or storage.root)
        families = bound.families
        # Create every series known to exist, so that it reads 0 rather than absent. (In
        # multiprocess mode a "mostrecent" gauge appears with the first scan: a child
        # that was never set has no timestamp and is not exported.)
        for attr in families.gauges:
            if attr not in _DISK_GAUGES and (self.export_limit or attr not in _LIMIT_GAUGES):
                bound.gauge(attr)
        if self.export_limit:
            bound.gauge("limit").set(config.evict_above)
        bound.gauge("interval").set(config.interval)
        for counter in (
            families.lookups,
            families.hits,
            families.fills,
            families.fill_failures,
            families.expired,
            families.scans,
        ):
            counter.labels(cache=bound.cache)
        for counter in (families.evictions, families.evicted_bytes):
            counter.labels(cache=bound.cache, policy=policy_name(config.policy))
        for context in ERROR_CONTEXTS:  # so that increase() sees the first error too
            families.errors.labels(cache=bound.cache, context=context)
        for histogram in (
            families.scan_duration,
            families.eviction_duration,
            families.fill_duration,
            families.evicted_idle,
        ):
            histogram.labels(cache=bound.cache)
        families.build_info.labels(
            cache=bound.cache,
            version=__version__,
            storage=type(storage).__name__,
            policy=policy_name(config.policy),
        ).set(1)
        self._totals = LiveTotals(storage.path)
        if self.whatif is not None and self._simulations is None:
            self._simulations = WhatIfSimulations(config, self.whatif)
        self._bound = bound

    def on_leader_change(self, is_leader: bool) -> None:
        self._leader = is_leader
        bound = self._bound
        if bound is None:
            return
        bound.gauge("leader").set(1 if is_leader else 0)
        if not is_leader and self._simulations is not None and not _multiprocess():
            # The what-if gauges are the leader's: a former leader stops exporting its
            # own (its simulations no longer see every process's lookups). In
            # multiprocess mode the newest value wins, the current leader's.
            for policy, factor in self._simulations.simulated:
                bound.families.whatif.remove(bound.cache, policy, size_label(factor))

    def on_access(self, key: str, hit: bool) -> None:
        bound = self._bound
        if bound is None:
            return
        bound.count(bound.families.lookups)
        if hit:
            bound.count(bound.families.hits)
        if self._simulations is not None and self._leader:
            self._simulations.access(key, hit)

    def on_fill(self, key: str, duration: float, error: BaseException | None) -> None:
        bound = self._bound
        if bound is None:
            return
        if self._simulations is not None and self._leader:
            self._simulations.filled(key, duration, error)
        bound.count(bound.families.fills)
        if error is None:
            bound.observe(bound.families.fill_duration, max(0.0, duration))
        else:
            bound.count(bound.families.fill_failures)

    def on_scan_start(self) -> None:
        self._local.scan_failed = False
        if self._totals is not None:
            self._totals.scan_started()

    def on_scan_end(self, snapshot: CacheSnapshot, duration: float) -> None:
        bound = self._bound
        if bound is None:
            return
        failed = getattr(self._local, "scan_failed", False)
        self._local.scan_failed = False
        bound.count(bound.families.scans)
        bound.observe(bound.families.scan_duration, max(0.0, duration))
        if self._totals is not None:
            self._set_sizes(bound, self._totals.scanned(snapshot))
        bound.gauge("pinned").set(len(snapshot.pinned))
        bound.gauge("staging").set(snapshot.staging_size)
        if snapshot.disk_free is not None and snapshot.disk_total is not None:
            bound.gauge("disk_free").set(snapshot.disk_free)
            bound.gauge("disk_total").set(snapshot.disk_total)
        if not failed:
            bound.gauge("last_success").set(snapshot.taken_at)
        if self._simulations is not None and self._leader:
            self._simulations.scanned(snapshot.entries)

    def on_evict_start(self, snapshot: CacheSnapshot, policy: str, trigger: str) -> None:
        if self._totals is not None:
            self._totals.scanned(snapshot)  # the view the run starts from

    def on_size_update(self, path: str, size: int) -> None:
        if self._simulations is not None and self._leader:
            self._simulations.sized(path, size)  # path is the key
        bound, totals = self._bound, self._totals
        if bound is not None and totals is not None:
            changed = totals.resized(path, size)  # a publish, or a scan's measurement
            if changed is not None:
                self._set_sizes(bound, changed)

    def on_evict_end(self, result: EvictionResult) -> None:
        bound, totals = self._bound, self._totals
        if bound is None:
            return
        families = bound.families
        bound.count(families.evictions, len(result.entries), policy=result.policy)
        bound.count(families.evicted_bytes, result.bytes_freed, policy=result.policy)
        if result.reason == "age":
            bound.count(families.expired, len(result.entries))
        bound.observe(families.eviction_duration, max(0.0, result.duration))
        for entry in result.entries:
            bound.observe(families.evicted_idle, max(0.0, result.started_at - entry.last_access))
        if totals is not None:
            # The next scan is an interval away; show the size the eviction left now.
            changed = totals.removed(e.key for e in result.entries)
            if changed is not None:
                self._set_sizes(bound, changed)

    def on_peer_requests(self, requests: Sequence[PeerRequest]) -> None:
        if self._simulations is not None and self._leader:
            self._simulations.peer_requests(requests)

    def on_cycle_complete(self, total_size: int, entry_count: int) -> None:
        bound, simulations = self._bound, self._simulations
        if bound is None or simulations is None:
            return
        simulations.update()  # the lookups since the last cycle, in the manager's thread
        for policy, factor, ratio in simulations.miss_ratios():
            size = size_label(factor)
            bound.families.whatif.labels(cache=bound.cache, policy=policy, size=size).set(ratio)

    def on_error(self, error: Exception, context: str) -> None:
        bound = self._bound
        if bound is None:
            return
        bound.count(bound.families.errors, context=context)
        if context == "scan":
            self._local.scan_failed = True

    def _set_sizes(self, bound: _Bound, totals: Totals) -> None:
        bound.gauge("size").set(totals.size)
        bound.gauge("entries").set(totals.entries)
        if self.export_limit:
            bound.gauge("limit").set(totals.evict_above)
            bound.gauge("overage").set(totals.overage)


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` over HTTP from a daemon thread.

    In multiprocess mode the default ``registry`` is replaced by a fresh registry with a
    ``MultiProcessCollector``, so the scrape shows every worker's values merged.

    Args:
        port: the TCP port; 0 picks a free one (read it from ``server.server_port``).
        addr: the address to listen on; the default only accepts local connections.
        registry: the registry to serve.

    Returns:
        What ``prometheus_client.start_http_server`` returns: the server (stop it with
        ``shutdown()`` and ``server_close()``) and its thread.
    """
    if registry is REGISTRY and _multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    return _start_http_server(port, addr=addr, registry=registry)
