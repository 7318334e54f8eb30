"""``filecache exporter``: a sidecar that manages a root and serves its metrics."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .helpers import Runner, assert_one_line_error, snapshot_tree


def start(root: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcti.filecache", "exporter", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://[^:]+:(\d+)/metrics", line)
    assert match, line + proc.stderr.read() if proc.stderr else line
    return proc, int(match.group(1))


def metrics(port: int) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("policy", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def poll(port: int, condition: str, check, timeout: float = 30.0) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        values = metrics(port)
        if check(values):
            return values
        assert time.monotonic() < deadline, f"{condition}: {values}"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_the_exporter_evicts_and_exports(cache_root: Path) -> None:
    proc, port = start(cache_root, "--evict-above", "2M", "--interval", "0.2")
    try:
        values = poll(
            port, "an eviction", lambda v: v.get(("filecache_evictions_total", "lru"), 0) > 0
        )
        assert values[("filecache_manager_leader", "")] == 1
        assert values[("filecache_limit_bytes", "")] == 2 * 1024**2
        values = poll(
            port,
            "within the limit",
            lambda v: 0 < v[("filecache_size_bytes", "")] <= 2 * 1024**2,
        )
    finally:
        stop(proc)


def test_no_evict_only_measures_and_exports_no_limit(cache_root: Path) -> None:
    before = snapshot_tree(cache_root)
    proc, port = start(cache_root, "--no-evict", "--interval", "0.2")
    try:
        values = poll(port, "two scans", lambda v: v[("filecache_scans_total", "")] >= 2)
        assert values[("filecache_size_bytes", "")] > 0
        assert values.get(("filecache_evictions_total", "none"), 0) == 0
        # No limit is enforced, so none is exported (not the int64 maximum), and no overage.
        names = {name for name, _ in values}
        assert "filecache_limit_bytes" not in names
        assert "filecache_overage_bytes" not in names
    finally:
        stop(proc)

    # Nothing of the models went; the exporter's own bookkeeping (metadata, the root's
    # lock and generation files) may change.
    def models(tree: dict[str, object]) -> set[str]:
        return {k for k in tree if "meta" not in k and not k.startswith("cache/.filecache")}

    assert models(snapshot_tree(cache_root)) == models(before)
    assert len(models(before)) > 5


def test_a_limit_is_required(cli: Runner, cache_root: Path) -> None:
    assert_one_line_error(cli("exporter", cache_root), 2, "--evict-above")
    assert_one_line_error(cli("exporter", cache_root, "--no-evict", "--port", "70000"), 2, "port")


@pytest.mark.parametrize(
    "options",
    [
        ["--evict-above", "1K"],
        ["--evict-to", "1K"],
        ["--policy", "lfu"],
        ["--evict-above", "2K", "--evict-to", "1K", "--policy", "lru"],
    ],
)
def test_eviction_options_are_refused_with_no_evict(
    cli: Runner, cache_root: Path, options: list[str]
) -> None:
    before = snapshot_tree(cache_root)
    result = cli("exporter", cache_root, "--no-evict", *options)
    assert_one_line_error(result, 2, f"--no-evict never evicts: {options[0]}")
    assert snapshot_tree(cache_root) == before


def test_sigterm_stops_with_status_0(cache_root: Path) -> None:
    proc, _ = start(cache_root, "--no-evict", "--interval", "0.05")
    stop(proc)


def test_ctrl_c_stops_with_status_130(cache_root: Path) -> None:
    proc, port = start(cache_root, "--no-evict", "--interval", "0.05")
    poll(port, "a scan", lambda v: v[("filecache_scans_total", "")] >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err == "stopped\n"


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_while_stopping_is_ignored(cache_root: Path, second: int) -> None:
    # A double Ctrl-C used to end in "RuntimeError: release unlocked lock" about one time
    # in three when the second came at once: it interrupted the shutdown inside a lock.
    # Each round sends the second signal at a different point of the shutdown.
    for gap in (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.002, 0.005, 0.01):
        proc, _ = start(cache_root, "--no-evict", "--interval", "0.05")
        proc.send_signal(signal.SIGINT)
        if gap:
            time.sleep(gap)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(second)
        _, err = proc.communicate(timeout=30)
        assert (proc.returncode, err) == (130, "stopped\n"), f"gap {gap}: {err}"
