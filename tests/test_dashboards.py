"""Checks of the Grafana dashboard and its provisioning (dashboards/grafana/).

The dashboard is validated against the Grafana 11.6 dashboard JSON schema kept in the shared
schemas folder next to the repository (``<repo>/../shared/schemas``); that check is skipped,
with a message, only when the folder is absent. Every panel query is parsed offline by
``promtool check rules`` (Debian package ``prometheus``), each expression becoming a
recording rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .metric_contract import CONTRACT, HISTOGRAM_SUFFIXES, HISTOGRAMS, QUERYABLE

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
DASHBOARD = REPO / "dashboards" / "grafana" / "filecache.json"
PROVISIONING = REPO / "dashboards" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "prometheus.yml"

METRIC_RE = re.compile(r"filecache_[a-z_]+")
SELECTOR_RE = re.compile(r"(filecache_[a-z_]+)\s*(\{[^}]*\})?")
RANGE_FUNC_RE = re.compile(r"\b(rate|irate|increase)\s*\(")
RANGE_RE = re.compile(r"\[([^\]]*)\]")
CACHE_MATCHER = 'cache=~"$cache"'


def _load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return _load_dashboard()


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including panels nested in (collapsed) rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def _targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in _panels(dashboard) for t in p.get("targets", [])]


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p, t in _targets(dashboard)]


def _variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    variables: list[dict[str, Any]] = dashboard["templating"]["list"]
    for var in variables:
        if var["name"] == name:
            return var
    raise AssertionError(f"dashboard has no template variable {name!r}")


def _call_argument(expr: str, open_paren: int) -> str:
    """Text between the parenthesis at ``open_paren`` and its matching closing one."""
    depth = 0
    for i in range(open_paren, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return expr[open_paren + 1 : i]
    raise AssertionError(f"unbalanced parentheses in {expr!r}")


def _prometheus_datasource() -> dict[str, Any]:
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    prometheus: list[dict[str, Any]] = [
        d for d in provisioned["datasources"] if d["type"] == "prometheus"
    ]
    assert len(prometheus) == 1, f"expected one Prometheus data source, got {prometheus}"
    return prometheus[0]


# ------------------------------------------------------------------------------ schema


def test_dashboard_validates_against_grafana_schema(dashboard: dict[str, Any]) -> None:
    schema_path = SCHEMAS / "grafana-dashboard-v11.6.schema.json"
    if not SCHEMAS.is_dir():
        pytest.skip(
            f"shared schemas folder {SCHEMAS} is absent: the Grafana 11.6 dashboard schema "
            "is not available in this checkout, so schema validation cannot run"
        )
    from jsonschema import Draft7Validator

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    errors = sorted(
        Draft7Validator(schema).iter_errors(dashboard), key=lambda e: list(e.absolute_path)
    )
    messages = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]
    assert not messages, "dashboard does not validate:\n" + "\n".join(messages)


def test_dashboard_is_not_an_export(dashboard: dict[str, Any]) -> None:
    # Grafana's "export for sharing" adds these; provisioning wants neither.
    assert "__inputs" not in dashboard
    assert "id" not in dashboard or isinstance(dashboard["id"], int)
    assert dashboard.get("uid"), "the dashboard needs a fixed uid for stable links"
    assert dashboard.get("title")


# --------------------------------------------------------------------------- variables


def test_datasource_variable(dashboard: dict[str, Any]) -> None:
    var = _variable(dashboard, "datasource")
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"


def test_cache_variable_is_multi_value(dashboard: dict[str, Any]) -> None:
    var = _variable(dashboard, "cache")
    assert var["type"] == "query"
    assert var["multi"] is True
    assert var["includeAll"] is True
    assert re.fullmatch(r"label_values\(\s*filecache_size_bytes\s*,\s*cache\s*\)", var["query"])
    assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # With "All" selected the selector becomes cache=~".*" rather than a huge alternation.
    assert var.get("allValue") == ".*"


# ------------------------------------------------------------------------------ panels


def test_dashboard_has_panels(dashboard: dict[str, Any]) -> None:
    panels = _panels(dashboard)
    assert len(panels) >= 10
    assert all(isinstance(p.get("id"), int) for p in panels)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel.get('title')} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel.get("title", "?"))
                assert other == panel.get("title", "?"), f"{panel['title']} overlaps {other}"


def test_every_panel_has_title_description_and_unit(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        title = panel.get("title", "")
        assert isinstance(title, str), f"panel {panel.get('id')}: title is not a string"
        assert title.strip(), f"panel {panel.get('id')} has no title"
        assert panel.get("description", "").strip(), f"panel {title!r} has no description"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        assert isinstance(unit, str), f"panel {title!r}: unit is not a string"
        assert unit.strip(), f"panel {title!r} has no unit"


def test_every_panel_queries_prometheus_through_the_variable(dashboard: dict[str, Any]) -> None:
    ref = {"type": "prometheus", "uid": "${datasource}"}
    for panel, target in _targets(dashboard):
        assert panel["datasource"] == ref, panel["title"]
        assert target.get("datasource", ref) == ref, panel["title"]
        assert target.get("expr", "").strip(), f"{panel['title']}: empty expr"
        assert target.get("refId"), f"{panel['title']}: target without refId"
    for panel in _panels(dashboard):
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), f"{panel['title']}: duplicate refIds"


def test_rate_and_increase_use_rate_interval(dashboard: dict[str, Any]) -> None:
    for title, expr in _exprs(dashboard):
        for match in RANGE_FUNC_RE.finditer(expr):
            argument = _call_argument(expr, match.end() - 1)
            ranges = RANGE_RE.findall(argument)
            assert ranges == ["$__rate_interval"], (
                f"{title}: {match.group(1)}() must use [$__rate_interval], got {ranges} in {expr}"
            )
        # No hard-coded range anywhere else either.
        for window in RANGE_RE.findall(expr):
            assert window == "$__rate_interval", f"{title}: hard-coded range [{window}] in {expr}"


def test_metric_names_are_in_the_contract(dashboard: dict[str, Any]) -> None:
    used = set()
    for title, expr in _exprs(dashboard):
        names = METRIC_RE.findall(expr)
        assert names, f"{title}: expr references no filecache_ metric: {expr}"
        for name in names:
            assert name in QUERYABLE, f"{title}: {name} is not in the metric contract ({expr})"
            base = name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                    base = name.removesuffix(suffix)
            assert base in CONTRACT
            used.add(base)
    missing = CONTRACT - used
    assert not missing, f"contract metrics shown by no panel: {sorted(missing)}"


def test_selectors_filter_on_the_cache_variable(dashboard: dict[str, Any]) -> None:
    for title, expr in _exprs(dashboard):
        # Every filecache_ series carries the `cache` label, filecache_build_info included.
        for name, matchers in SELECTOR_RE.findall(expr):
            assert CACHE_MATCHER in matchers, f"{title}: {name} lacks {CACHE_MATCHER} in {expr}"


def test_required_views(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(expr for _, expr in _exprs(dashboard))
    compact = re.sub(r"\s+", "", exprs)

    def quantile(q: str, metric: str) -> bool:
        return f"histogram_quantile({q},sumby(cache,le)(rate({metric}_bucket{{" in compact

    for q in ("0.5", "0.9"):
        assert quantile(q, "filecache_evicted_entry_idle_seconds"), f"idle p{q} missing"
    for metric in ("filecache_fill_duration_seconds", "filecache_scan_duration_seconds"):
        for q in ("0.5", "0.99"):
            assert quantile(q, metric), f"{metric} q{q} missing"
    assert "time()-maxby(cache)(filecache_last_scan_success_timestamp_seconds{" in compact
    assert "rate(filecache_hits_total{" in compact
    assert "rate(filecache_lookups_total{" in compact
    assert "sumby(cache,policy)(rate(filecache_evicted_bytes_total{" in compact
    assert "sumby(cache,context)(rate(filecache_errors_total{" in compact
    assert "filecache_manager_leader{" in compact
    assert "maxby(cache)(filecache_filesystem_free_bytes{" in compact
    assert "maxby(cache)(filecache_filesystem_size_bytes{" in compact
    assert "0.1*maxby(cache)(filecache_filesystem_size_bytes{" in compact  # the alert's line
    assert "sumby(cache)(rate(filecache_expired_total{" in compact
    assert "maxby(cache,policy,size)(filecache_whatif_miss_ratio{" in compact


def test_panel_queries_parse_as_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(apt-get install prometheus) to parse the dashboard's PromQL"
        )
    rules = []
    for panel, target in _targets(dashboard):
        expr = (
            target["expr"]
            .replace("$__rate_interval", "1m")
            .replace("${cache}", ".*")
            .replace("$cache", ".*")
        )
        assert "$" not in expr, f"{panel['title']}: unexpanded variable in {expr}"
        rules.append({"record": f"panel_{panel['id']}_{target['refId']}", "expr": expr})
    rule_file = tmp_path / "panels.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# -------------------------------------------------------------------------- provisioning


def test_datasource_provisioning_matches_the_dashboard(dashboard: dict[str, Any]) -> None:
    prometheus = _prometheus_datasource()
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["uid"], "the provisioned Prometheus data source needs a fixed uid"
    assert prometheus.get("isDefault") is True
    # The datasource variable defaults to the provisioned data source.
    assert _variable(dashboard, "datasource")["current"]["value"] == prometheus["uid"]


def test_dashboard_provider_is_a_file_provider() -> None:
    providers = yaml.safe_load(
        (PROVISIONING / "dashboards" / "filecache.yml").read_text(encoding="utf-8")
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
