"""The demo server, run as a user runs it, scraped by a real Prometheus server.

The Prometheus part checks the operator kit against live data: every PromQL target of
every dashboard panel returns data, and the alert rules load and evaluate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from vcti.filecache.cli._common import POLICIES

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "dashboards" / "grafana" / "filecache.json"
PROMETHEUS_DIR = REPO / "dashboards" / "prometheus"


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    port: int
    work: Path

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


def start_demo(work: Path | None, *extra: str, env: dict[str, str] | None = None) -> Demo:
    """Start the demo in ``work`` (None: a temporary folder of its own)."""
    root = [] if work is None else ["--root", str(work)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vcti.filecache",
            "demo",
            *root,
            "--port",
            "0",
            "--evict-above",
            "3M",
            "--models",
            "80",
            "--field-size",
            "128K",
            "--parse-cost",
            "0.002",
            "--clients",
            "3",
            "--interval",
            "0.5",
            "--tracing",
            "console",
            "--no-progress",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    for _ in range(10):
        line = proc.stderr.readline()
        match = re.search(r"filecache demo on http://127\.0\.0\.1:(\d+)  .*root: (\S+)", line)
        if match:
            return Demo(proc, int(match.group(1)), work or Path(match.group(2)).parent)
    proc.kill()
    raise AssertionError(f"the demo did not start: {line}{proc.communicate()[1]}")


def poll(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = start_demo(tmp_path_factory.mktemp("demo"), "--duration", "600")
    try:
        yield demo
    finally:
        demo.proc.send_signal(signal.SIGINT)
        demo.proc.communicate(timeout=60)


def metric(demo: Demo, name: str) -> float:
    _, _, body = demo.get("/metrics")
    values = [
        float(line.split()[-1])
        for line in body.decode().splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    ]
    return sum(values)


def test_the_demo_serves_models_and_caches_them(demo: Demo) -> None:
    status, headers, body = demo.get("/models/7/summary")
    assert status == 200
    summary = json.loads(body)
    assert summary["source"] == "model_00007.sim"
    assert summary["nodes"] > 0
    status, headers, body = demo.get("/models/7/field")
    assert status == 200
    assert headers["X-Cache"] == "hit"  # the summary request filled the model
    assert len(body) == 128 * 1024
    assert demo.get("/models/80/summary")[0] == 404  # outside the working set
    assert demo.get("/nothing")[0] == 404
    assert demo.get("/healthz")[0] == 200


def test_the_load_fills_hits_and_evicts(demo: Demo) -> None:
    poll("evictions", lambda: metric(demo, "filecache_evictions_total") > 5)
    assert metric(demo, "filecache_hits_total") > 0
    assert metric(demo, "filecache_fills_total") > 0
    assert metric(demo, "filecache_errors_total") == 0
    assert metric(demo, "filecache_limit_bytes") == 3 * 1024**2


def test_the_demo_writes_json_events_and_spans(demo: Demo) -> None:
    poll("evictions", lambda: metric(demo, "filecache_evictions_total") > 0)
    events = [json.loads(line) for line in (demo.work / "events.jsonl").read_text().splitlines()]
    names = {event["event"] for event in events}
    assert {"filecache.manager.started", "filecache.scan.completed"} <= names
    poll("an eviction event", lambda: "filecache.entry.evicted" in _event_names(demo))
    spans = poll("spans", (demo.work / "spans.jsonl").read_text)
    assert '"name": "filecache.model"' in spans
    assert '"name": "GET /models/{id}/summary"' in spans


def _event_names(demo: Demo) -> set[str]:
    lines = (demo.work / "events.jsonl").read_text().splitlines()
    return {json.loads(line)["event"] for line in lines}


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    demo = start_demo(tmp_path)
    poll("a request", lambda: demo.get("/models/1/summary")[0] == 200)
    demo.proc.send_signal(signal.SIGINT)
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted, stopping" in err
    assert re.search(r"requests +\d+ \| hit ratio", err)
    assert (tmp_path / "cache").is_dir()  # a work folder given with --root is kept


def test_clients_that_disconnect_mid_response_leave_no_traceback(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--clients", "0", "--field-size", "4M", "--evict-above", "64M")
    for model in range(5):
        assert demo.get(f"/models/{model}/field")[0] == 200  # filled: the next are hits
    for round_ in range(40):
        with socket.create_connection(("127.0.0.1", demo.port), timeout=30) as client:
            client.sendall(f"GET /models/{round_ % 5}/field HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            client.recv(100)  # the response has started
            # Close with a reset (linger 0) while 4 MiB are still to come.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert demo.get("/healthz")[0] == 200  # it serves on
    demo.proc.send_signal(signal.SIGTERM)
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 0, err
    assert "Traceback" not in err
    assert "ConnectionResetError" not in err
    assert "BrokenPipeError" not in err


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "vcti.filecache", "demo", "--root", str(tmp_path), "--port",
             str(port), "--clients", "0", "--tracing", "off", "--no-progress"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def _private_tmp(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder for the demo's temporary work folder, and the environment that points at it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return tmp, {**os.environ, "TMPDIR": str(tmp)}


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [
        (signal.SIGTERM, 0, "terminated, stopping"),
        (signal.SIGINT, 130, "interrupted, stopping"),
        (signal.SIGHUP, 129, "hung up, stopping"),
    ],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_a_stop_signal_stops_cleanly_and_removes_the_temporary_folder(
    tmp_path: Path, stop: int, status: int, said: str
) -> None:
    tmp, env = _private_tmp(tmp_path)
    demo = start_demo(None, env=env)
    assert demo.work.parent == tmp
    poll("a request", lambda: demo.get("/models/1/field")[0] == 200)
    poll("models in the cache", lambda: list((demo.work / "cache" / "models").rglob("*.bin")))
    demo.proc.send_signal(stop)
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == status, err
    assert "Traceback" not in err
    assert said in err
    assert re.search(r"requests +\d+ \| hit ratio", err)  # the summary of a clean stop
    assert list(tmp.iterdir()) == []


def test_the_temporary_folder_goes_when_the_duration_ends_or_start_fails(tmp_path: Path) -> None:
    tmp, env = _private_tmp(tmp_path)
    demo = start_demo(None, "--duration", "1", env=env)
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 0, err
    assert list(tmp.iterdir()) == []

    with socket.socket() as taken:  # the port is in use: the server cannot start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "vcti.filecache", "demo", "--port", port, "--clients", "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("filecache: error: ")
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_while_stopping_is_ignored(tmp_path: Path, second: int) -> None:
    tmp, env = _private_tmp(tmp_path)
    for gap in (0.0, 0.0, 0.0, 0.001, 0.01, 0.1):
        demo = start_demo(None, env=env)
        demo.proc.send_signal(signal.SIGINT)
        if gap:
            time.sleep(gap)
        with contextlib.suppress(ProcessLookupError):
            demo.proc.send_signal(second)
        _, err = demo.proc.communicate(timeout=60)
        assert demo.proc.returncode == 130, f"gap {gap}: {err}"
        assert "Traceback" not in err, f"gap {gap}: {err}"
        assert list(tmp.iterdir()) == [], f"gap {gap}"


def test_spans_and_events_are_rotated_at_the_size_cap(tmp_path: Path) -> None:
    cap = 32 * 1024
    demo = start_demo(tmp_path, "--max-log-size", "32K")
    try:
        poll("rotated spans", (tmp_path / "spans.jsonl.1").exists)
    finally:
        demo.proc.send_signal(signal.SIGTERM)
        _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 0, err
    for name in ("spans.jsonl", "spans.jsonl.1", "events.jsonl"):
        path = tmp_path / name
        assert path.stat().st_size <= cap, name
        records = [json.loads(line) for line in path.read_text().splitlines()]  # whole lines
        assert records, name
    assert not (tmp_path / "spans.jsonl.2").exists()
    spans = [json.loads(line) for line in (tmp_path / "spans.jsonl.1").read_text().splitlines()]
    assert {"filecache.model", "GET /models/{id}/summary"} <= {span["name"] for span in spans}


def test_duration_stops_the_demo(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--duration", "2")
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "70000"], {}, "not a port number"),
        (["--evict-above", "lots"], {}, "--evict-above"),
        (["--interval", "0"], {}, "--interval"),
        (["--policy", "mru"], {}, "--policy"),
        ([], {"FILECACHE_DEMO_PORT": "eighty"}, "FILECACHE_DEMO_PORT"),
        (["--trace", ""], {}, "argument --trace: must not be empty"),
        ([], {"FILECACHE_DEMO_TRACE": ""}, "FILECACHE_DEMO_TRACE='': must not be empty"),
    ],
)
def test_bad_settings(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vcti.filecache", "demo", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def _stop(demo: Demo) -> None:
    demo.proc.send_signal(signal.SIGTERM)
    _, err = demo.proc.communicate(timeout=60)
    assert demo.proc.returncode == 0, err


def _replay(trace: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "vcti.filecache", "replay", str(trace), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_demo_records_a_trace_that_replay_reads(tmp_path: Path) -> None:
    trace = tmp_path / "day.csv"
    demo = start_demo(tmp_path, "--clients", "0", "--trace", str(trace))
    try:
        for path in ("/models/1/summary", "/models/1/field", "/models/2/field"):
            assert demo.get(path)[0] == 200
    finally:
        _stop(demo)
    header, *lines = trace.read_text().splitlines()
    assert header == "time,key,size,cost,hit"
    rows = [line.split(",") for line in lines]
    assert [(row[1], row[4]) for row in rows] == [
        ("models/0000/model_00001", "0"),
        ("models/0000/model_00001", "1"),
        ("models/0000/model_00002", "0"),
    ]
    assert all(int(row[2]) > 128 * 1024 for row in rows)  # the field and the summary
    assert all(float(row[3]) > 0 for row in rows)  # the fill's seconds, on hits too

    # The same file, through the environment variable: appended to, one header.
    env = {**os.environ, "FILECACHE_DEMO_TRACE": str(trace)}
    demo = start_demo(tmp_path, "--clients", "0", env=env)
    try:
        assert demo.get("/models/2/summary")[0] == 200  # cached by the first run
        assert demo.get("/models/3/summary")[0] == 200
    finally:
        _stop(demo)
    assert trace.read_text().count("time,key,size,cost,hit") == 1

    document = _replay(trace, "--exact", "--limit", "100%")
    assert document["requests"] == 5
    # Room for every model: models 1, 2 and 3 miss once each, whatever the policy.
    assert sorted(r["policy"] for r in document["results"]) == sorted(POLICIES)
    assert [r["misses"] for r in document["results"]] == [3] * len(POLICIES)


def test_a_traced_demo_under_load_replays(tmp_path: Path) -> None:
    trace = tmp_path / "load.csv"
    demo = start_demo(tmp_path, "--trace", str(trace), "--policy", "gdsf")
    try:
        poll("evictions", lambda: metric(demo, "filecache_evictions_total") > 5)
    finally:
        _stop(demo)
    document = _replay(trace)
    assert document["requests"] == len(trace.read_text().splitlines()) - 1 > 20
    requests = document["requests"]
    assert all(0 < r["misses"] <= requests for r in document["results"])
    # The curve's smallest sizes may miss everything; the largest of each policy may not.
    for policy in POLICIES:
        curve = [r["misses"] for r in document["results"] if r["policy"] == policy]
        assert min(curve) < requests


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_the_demo_runs_every_built_in_policy(tmp_path: Path, policy: str) -> None:
    demo = start_demo(tmp_path, "--clients", "0", "--policy", policy)
    try:
        assert demo.get("/models/1/summary")[0] == 200
        _, _, body = demo.get("/metrics")
    finally:
        _stop(demo)
    (info,) = [
        line for line in body.decode().splitlines() if line.startswith("filecache_build_info{")
    ]
    assert f'policy="{policy}"' in info


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing" / "t.csv", "no such directory"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: _write(tmp / "notes.csv", "a,b\n1,2\n"), "exists and is not a trace"),
    ],
    ids=["missing-folder", "a-directory", "not-a-trace"],
)
@pytest.mark.parametrize("via", ["flag", "env"])
def test_a_bad_trace_file_is_refused_and_left_alone(
    tmp_path: Path, make: Callable[[Path], Path], message: str, via: str
) -> None:
    target = make(tmp_path)
    before = target.read_bytes() if target.is_file() else None
    args = ["--trace", str(target)] if via == "flag" else []
    env = {**os.environ, "FILECACHE_DEMO_TRACE": str(target)} if via == "env" else None
    result = subprocess.run(
        [sys.executable, "-m", "vcti.filecache", "demo", "--clients", "0", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("filecache: error: --trace ")
    if before is not None:
        assert target.read_bytes() == before
    assert not (tmp_path / "missing").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- a real Prometheus server -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            document = json.loads(response.read())
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        return list(data["result"])


@pytest.fixture(scope="module")
def prometheus(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus server is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    # Scrapes twice a second: the dashboard test waits for a few of them.
    config["global"] = {
        "scrape_interval": "500ms",
        "scrape_timeout": "500ms",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    port = free_port()
    for job in config["scrape_configs"]:
        target = (
            f"127.0.0.1:{demo.port}" if job["job_name"] == "filecache-demo" else f"127.0.0.1:{port}"
        )
        job["static_configs"] = [{"targets": [target]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Prometheus(port)
    try:
        poll("Prometheus to answer", lambda: _ready(server), timeout=60)
        yield server
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def _ready(server: Prometheus) -> bool:
    try:
        return bool(server.query("up"))
    except (OSError, AssertionError):
        return False


def panel_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_dashboard_panel_has_data(prometheus: Prometheus, demo: Demo) -> None:
    # Wait for enough scrapes, with evictions in the most recent ones.
    poll(
        "a few scrapes",
        lambda: prometheus.query("count_over_time(filecache_scans_total[1m]) >= 5"),
        timeout=90,
    )
    poll(
        "recent evictions",
        lambda: prometheus.query("increase(filecache_evictions_total[10s]) > 0"),
        timeout=90,
    )
    targets = panel_targets()
    assert len(targets) >= 20
    empty = []
    for title, expr in targets:
        promql = expr.replace("$__rate_interval", "15s").replace("$cache", ".*")
        result = prometheus.query(promql)
        if not result:
            empty.append(f"{title}: {promql}")
        for series in result:
            assert series["metric"].get("cache", "demo") == "demo", (title, series)
    assert empty == []


def test_the_disk_panel_shows_the_demo_filesystem(prometheus: Prometheus, demo: Demo) -> None:
    # The demo's cache is on local storage: Prometheus has the filesystem of its work folder.
    disk = _panel("Filesystem free space vs size")
    exprs = {t["refId"]: t["expr"].replace("$cache", "demo") for t in disk["targets"]}

    def value(ref: str) -> float | None:
        result = prometheus.query(exprs[ref])
        return float(result[0]["value"][1]) if result else None

    size = poll("the filesystem size", lambda: value("B"))
    st = os.statvfs(demo.work / "cache")
    assert size == st.f_blocks * st.f_frsize
    free = value("A")
    assert free is not None
    assert 0 < free <= size
    assert value("C") == pytest.approx(0.1 * size)
    # The alert's expression, without its threshold, is the free fraction the panel shows.
    (rule,) = [
        rule
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if rule["alert"] == "FileCacheDiskNearlyFull"
    ]
    fraction_expr = rule["expr"].rsplit("<", 1)[0]
    (series,) = prometheus.query(fraction_expr)
    assert series["metric"] == {"cache": "demo"}
    assert 0 < float(series["value"][1]) <= 1


def test_the_what_if_panel_shows_the_demo_policy_at_each_size(
    prometheus: Prometheus, demo: Demo
) -> None:
    # The demo's leader simulates its lookups at 0.5, 1, 2 and 4 times its limit.
    (target,) = _panel("Miss ratio if the disk were bigger or smaller")["targets"]
    expr = target["expr"].replace("$cache", "demo")
    result = poll("the what-if gauges", lambda: prometheus.query(expr))
    ratios = {series["metric"]["size"]: float(series["value"][1]) for series in result}
    assert {series["metric"]["policy"] for series in result} == {"lru"}
    assert set(ratios) == {"0.5x", "1x", "2x", "4x"}
    assert all(0 <= ratio <= 1 for ratio in ratios.values())
    # Twice the disk misses less: the demo's models are larger than half its limit's share.
    assert ratios["0.5x"] > ratios["4x"]


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == title]
    return dict(panel)


def test_the_alert_rules_load_and_evaluate(prometheus: Prometheus) -> None:
    names = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [
            rule for group in prometheus.api("/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        return rules if rules and all(r.get("health") == "ok" for r in rules) else None

    rules = poll("every rule evaluated", evaluated)
    assert {rule["name"] for rule in rules} == names
    # A healthy demo fires nothing but, at most, the warnings of a deliberately tiny cache.
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert firing <= {"FileCacheOverLimit", "FileCacheThrashing"}, firing


def test_rotating_file_keeps_whole_records_under_the_cap(tmp_path: Path) -> None:
    from vcti.filecache.demo._rotating import RotatingFile

    path = tmp_path / "log.jsonl"
    path.write_text("old\n")  # appended to
    stream = RotatingFile(path, max_bytes=10)
    stream.write("abcd\n")  # 4 + 5 bytes: fits
    stream.write("efgh\n")  # would make 14: rotates first
    stream.write("x" * 20 + "\n")  # larger than the cap: alone in a file
    stream.write("ij\n")
    stream.flush()
    stream.close()
    stream.close()
    assert path.read_text() == "ij\n"
    assert (tmp_path / "log.jsonl.1").read_text() == "x" * 20 + "\n"
    assert not (tmp_path / "log.jsonl.2").exists()
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        RotatingFile(path, 0)
