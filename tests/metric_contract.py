"""The metric contract, in one place: the names the exporter, dashboard and alerts share.

Prefix ``filecache_``, label ``cache``; changing a name is a changelog entry.
"""

from __future__ import annotations

GAUGES = (
    "filecache_size_bytes",
    "filecache_limit_bytes",
    "filecache_overage_bytes",
    "filecache_entries",
    "filecache_pinned_entries",
    "filecache_staging_bytes",
    "filecache_scan_interval_seconds",
    "filecache_last_scan_success_timestamp_seconds",
    "filecache_manager_leader",
)
#: Gauges exported only where the storage measures its filesystem (LocalStorage), from the
#: first scan on.
DISK_GAUGES = ("filecache_filesystem_free_bytes", "filecache_filesystem_size_bytes")
#: Gauges with ``policy`` and ``size`` labels too, exported by the leader from its first
#: cycle with lookups on (the what-if simulations).
WHATIF_GAUGES = ("filecache_whatif_miss_ratio",)
#: Counters with only the ``cache`` label.
PLAIN_COUNTERS = (
    "filecache_lookups_total",
    "filecache_hits_total",
    "filecache_fills_total",
    "filecache_fill_failures_total",
    "filecache_expired_total",
    "filecache_scans_total",
)
#: Counters with a ``policy`` label too.
POLICY_COUNTERS = ("filecache_evictions_total", "filecache_evicted_bytes_total")
COUNTERS = (*PLAIN_COUNTERS, *POLICY_COUNTERS, "filecache_errors_total")
HISTOGRAMS = (
    "filecache_scan_duration_seconds",
    "filecache_eviction_duration_seconds",
    "filecache_fill_duration_seconds",
    "filecache_evicted_entry_idle_seconds",
)
INFO = ("filecache_build_info",)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

CONTRACT = frozenset(GAUGES + DISK_GAUGES + WHATIF_GAUGES + COUNTERS + HISTOGRAMS + INFO)
#: Series names a query may select: histograms only through their suffixed series.
QUERYABLE = frozenset(GAUGES + DISK_GAUGES + WHATIF_GAUGES + COUNTERS + INFO) | {
    h + s for h in HISTOGRAMS for s in HISTOGRAM_SUFFIXES
}
