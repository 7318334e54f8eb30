"""Checks of the Prometheus alerting rules and configuration (dashboards/prometheus/).

Runs ``promtool check rules``, ``promtool test rules`` and ``promtool check config``. These
need promtool from Debian's ``prometheus`` package: without it the tests fail, they never
skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .metric_contract import QUERYABLE

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "dashboards" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"

REQUIRED_ALERTS = {
    "FileCacheOverLimit",
    "FileCacheOverLimitNotEvicting",
    "FileCacheScanStale",
    "FileCacheEvictionOrScanErrors",
    "FileCacheFillFailures",
    "FileCacheNoLeader",
    "FileCacheThrashing",
    "FileCacheDiskNearlyFull",
}
SEVERITIES = {"info", "warning", "critical"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's prometheus package "
            "(apt-get install prometheus), which provides /usr/bin/promtool"
        )
    return path


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", str(ALERTS.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", str(ALERTS_TEST.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", str(CONFIG.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_exist() -> None:
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    missing = REQUIRED_ALERTS - set(names)
    assert not missing, f"missing alerts: {sorted(missing)}"


def test_every_alert_has_one_prefix() -> None:
    # An Alertmanager route on alertname=~"FileCache.*" must match every alert.
    names = [rule["alert"] for rule in _alert_rules()]
    assert [name for name in names if not re.fullmatch(r"FileCache[A-Z][A-Za-z]+", name)] == []


def test_every_alert_has_severity_summary_and_description() -> None:
    for rule in _alert_rules():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            text = annotations.get(key, "")
            assert isinstance(text, str), f"{name}: {key} is not a string"
            assert text.strip(), f"{name}: no {key} annotation"
            assert "{{ $labels.cache }}" in text, f"{name}: {key} does not name the cache"


def test_alerts_only_use_contract_metrics() -> None:
    for rule in _alert_rules():
        names = re.findall(r"filecache_[a-z_]+", rule["expr"])
        assert names, f"{rule['alert']}: no filecache_ metric in {rule['expr']}"
        unknown = set(names) - QUERYABLE
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not in the metric contract"


def test_required_alert_conditions() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    compact = {name: re.sub(r"\s+", "", rule["expr"]) for name, rule in rules.items()}
    assert rules["FileCacheOverLimit"]["for"] == "15m"
    assert "filecache_overage_bytes" in compact["FileCacheOverLimit"]
    assert "filecache_evictions_total" in compact["FileCacheOverLimitNotEvicting"]
    stale = compact["FileCacheScanStale"]
    assert "time()-" in stale
    assert ">3*" in stale
    assert "filecache_scan_interval_seconds" in stale
    assert "sumby(cache)(filecache_manager_leader)==0" in compact["FileCacheNoLeader"]
    thrashing = compact["FileCacheThrashing"]
    assert "histogram_quantile(0.5," in thrashing
    assert "filecache_evicted_entry_idle_seconds_bucket" in thrashing
    assert "<300" in thrashing
    assert "filecache_errors_total" in compact["FileCacheEvictionOrScanErrors"]
    assert "filecache_fill_failures_total" in compact["FileCacheFillFailures"]
    disk = compact["FileCacheDiskNearlyFull"]
    assert rules["FileCacheDiskNearlyFull"]["for"] == "5m"
    assert "maxby(cache)(filecache_filesystem_free_bytes)" in disk
    assert "/maxby(cache)(filecache_filesystem_size_bytes>0)" in disk
    assert disk.endswith("<0.1")


def test_unit_tests_cover_firing_and_quiet_cases() -> None:
    """Each alert has a test case where it fires and one where it does not."""
    spec = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert spec["rule_files"] == [ALERTS.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in spec["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fires == set(), f"alerts never shown to fire: {sorted(names - fires)}"
    assert names - quiet == set(), f"alerts never shown quiet: {sorted(names - quiet)}"


def test_prometheus_config_scrapes_the_demo_and_loads_the_alerts() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert ALERTS.name in config["rule_files"]
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert "demo:8000" in targets
    interval = config["global"]["scrape_interval"]
    assert re.fullmatch(r"\d+s", interval), interval
    assert int(interval[:-1]) <= 15, interval
