"""``filecache replay TRACE...``: tables, JSON, plots, and a one-line error for bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcti.filecache._trace import MAX_LINE
from vcti.filecache.cli import main
from vcti.filecache.replay import POLICY_NAMES, ReplaySettings, replay

from .helpers import Runner

TRACE = "time,key,size,cost,hit\n" + "".join(
    f"{t},{key},{size},{cost},0\n"
    for t, (key, size, cost) in enumerate(
        [("a", 400, 10), ("b", 300, 1), ("c", 300, 50), ("a", 400, 10), ("d", 500, 2)] * 6
    )
)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "day.csv"
    path.write_text(TRACE)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | os.PathLike[str]):
    status = main(["replay", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_table_marks_the_best_policy_of_each_limit(cli: Runner, trace: Path) -> None:
    result = cli("replay", trace, "--limit", "50%", "--limit", "1K", "--policy", "lru,cost-aware")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"{trace}: 30 requests, unique bytes 1.5 KiB; deployed mode"
    assert lines[1].split() == [
        "limit",
        "policy",
        "requests",
        "misses",
        "object",
        "miss",
        "byte",
        "miss",
        "cost",
        "miss",
        "peak",
        "over",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0] + " " + r[1], r[2]) for r in rows] == [
        ("750 B", "lru"),
        ("750 B", "cost-aware"),
        ("1.0 KiB", "lru"),
        ("1.0 KiB", "cost-aware"),
    ]
    records = replay([trace], policies=["lru", "cost-aware"], limits=["50%", "1K"])
    for row, expected in zip(rows, records[0]["results"], strict=True):
        assert int(row[4]) == expected["misses"]
        for cell, field in zip(
            row[5:8], ("object_miss_ratio", "byte_miss_ratio", "cost_miss_ratio"), strict=True
        ):
            assert cell.rstrip("*") == f"{100 * expected[field]:.2f}%"
    for limit in ("750 B", "1.0 KiB"):
        group = [r for r in rows if r[0] + " " + r[1] == limit]
        for column in (5, 6, 7):
            assert any(r[column].endswith("*") for r in group), (limit, column)


def test_json_is_one_object_per_trace_and_matches_the_library(
    capsys: pytest.CaptureFixture[str], trace: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("time,key,size\n1,x,10\n2,y,10\n3,x,10\n")
    status, out, err = run(capsys, trace, other, "--json", "--exact", "--limit", "10%,20")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records == replay([trace, other], limits=["10%", "20"], exact=True)
    assert [r["trace"] for r in records] == [str(trace), str(other)]
    assert [r["policy"] for r in records[0]["results"][: len(POLICY_NAMES)]] == list(POLICY_NAMES)
    assert records[1]["results"][0]["cost_miss_ratio"] is None


def test_concat_replays_rotated_files_as_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old, new = tmp_path / "t.csv.1", tmp_path / "t.csv"
    old.write_text("time,key,size\n1,a,10\n")
    new.write_text("time,key,size\n2,a,10\n")
    status, out, _ = run(capsys, "--concat", old, new, "--json", "--policy", "lru", "--limit", "1K")
    assert status == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["requests"] == 2
    assert record["results"][0]["misses"] == 1


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_writes_the_figure(
    capsys: pytest.CaptureFixture[str], trace: Path, tmp_path: Path, suffix: str
) -> None:
    pytest.importorskip("matplotlib")
    figure = tmp_path / f"plot{suffix}"
    status, out, err = run(capsys, trace, "--plot", figure, "--limit", "20%,50%,100%")
    assert (status, err) == (0, "")
    assert out.startswith(f"{trace}: 30 requests")
    data = figure.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:2000]
    if suffix == ".svg":
        for policy in POLICY_NAMES:
            assert policy.encode() in data


def test_plot_panels_units_styles_and_target(
    capsys: pytest.CaptureFixture[str], trace: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    figure = tmp_path / "plot.svg"
    status, out, err = run(
        capsys, trace, "--plot", figure, "--sizes", "20%..100%:4", "--target", "cost=40%"
    )
    assert (status, err) == (0, "")
    text = figure.read_text()
    for title in (
        "object miss ratio",
        "byte miss ratio",
        "cost miss ratio (share of recompute seconds)",
        "disk needed (limit + peak overshoot)",
        "cache size (B)",  # 300 B to 1.5 KiB: the unit of the largest is KiB, ticks in B
    ):
        assert title in text or title.replace("(B)", "(KiB)") in text, title
    # lru and sized-lru coincide on this trace: the legend says so.
    assert "sized-lru (= lru)" in text
    assert out.splitlines()[-1].startswith("target: ")


def test_plot_styles_and_units() -> None:
    from vcti.filecache.cli._plot import style, unit_for

    assert style("lru") != style("lfu")
    assert style("lru") == style("lru")  # whatever else is drawn
    assert len({style(p)["color"] for p in POLICY_NAMES}) == len(POLICY_NAMES)
    assert len({style(p)["marker"] for p in POLICY_NAMES}) == len(POLICY_NAMES)
    assert unit_for(500) == ("B", 1)
    assert unit_for(3 * 2**30) == ("GiB", 2**30)
    assert unit_for(2**41) == ("TiB", 2**40)


def test_target_names_the_smallest_size_that_meets_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from vcti.filecache.cli._target import Target, recommendation

    record = {
        "results": [
            {"policy": "lru", "limit_bytes": 2**30, "cost_miss_ratio": 0.5},
            {"policy": "cost-aware", "limit_bytes": 2**30, "cost_miss_ratio": 0.19},
            {"policy": "lru", "limit_bytes": 2**31, "cost_miss_ratio": 0.2},
            {"policy": "cost-aware", "limit_bytes": 2**31, "cost_miss_ratio": 0.1},
        ]
    }
    assert recommendation(record, Target("cost", 0.2)) == (
        "cost-aware at 1.0 GiB misses at most 20% of recompute seconds; lru needs 2.0 GiB"
    )
    assert recommendation(record, Target("cost", 0.15)) == (
        "cost-aware at 2.0 GiB misses at most 15% of recompute seconds; "
        "lru does not at any size replayed"
    )
    assert recommendation(record, Target("cost", 0.05)).startswith(
        "no policy misses at most 5% of recompute seconds at the sizes replayed (up to 2.0 GiB)"
    )
    path = tmp_path / "t.csv"
    path.write_text(TRACE)
    status, out, _ = run(capsys, path, "--policy", "lru", "--target", "object=90%", "--json")
    assert status == 0
    (target,) = [json.loads(line)["target"] for line in out.splitlines()]
    assert target["measure"] == "object"
    assert target["ratio"] == 0.9
    assert set(target["smallest"]) == {"lru"}


def test_plot_without_matplotlib_is_a_clear_error(trace: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from vcti.filecache.cli import main\n"
        f"sys.exit(main(['replay', {str(trace)!r}, '--plot', {str(tmp_path / 'p.png')!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "filecache: error: --plot needs matplotlib: pip install 'vcti-file-cache[plot]'\n"
    )
    assert not (tmp_path / "p.png").exists()


BAD_TRACES = [
    ("no-size.csv", "time,key\n1,a\n", "{p}:1: missing column size"),
    ("empty.csv", "", "{p}:1: empty file"),
    ("header-only.csv", "time,key,size\n", "{p}: no requests after the header"),
    ("negative.csv", "time,key,size\n1,a,10\n2,b,-5\n", "{p}:3: size must not be negative"),
    ("fraction.csv", "time,key,size\n1,a,1.5\n", "{p}:2: size is not a whole number"),
    ("time.csv", "time,key,size\nnoon,a,1\n", "{p}:2: time is not a number: 'noon'"),
    ("fields.csv", "time,key,size\n1,a,1,9\n", "{p}:2: expected 3 fields, got 4"),
    ("key.csv", "time,key,size\n1,,1\n", "{p}:2: empty key"),
    ("cost.csv", "time,key,size,cost\n1,a,1,-2\n", "{p}:2: cost must not be negative"),
    ("nan.csv", "time,key,size,cost\n1,a,1,nan\n", "{p}:2: cost is not a finite number"),
    ("hit.csv", "time,key,size,hit\n1,a,1,yes\n", "{p}:2: hit must be 0, 1 or empty"),
    ("nosize.csv", "time,key,size\n1,a,\n", "{p}:2: empty size, and key 'a' has no known size"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_TRACES, ids=[b[0] for b in BAD_TRACES])
def test_a_bad_trace_is_a_one_line_error_naming_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    status, out, err = run(capsys, path)
    assert status == 2
    assert out == ""
    assert err.startswith("filecache: error: " + message.format(p=path))
    assert err.count("\n") == 1


def test_unreadable_and_missing_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, tmp_path / "missing.csv")
    assert status == 2
    assert err == f"filecache: error: {tmp_path / 'missing.csv'}: No such file or directory\n"
    status, _, err = run(capsys, tmp_path)
    assert status == 2
    assert err == f"filecache: error: {tmp_path}: Is a directory\n"
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"time,key,size\n\xff\xfe\x00\n")
    status, _, err = run(capsys, binary)
    assert status == 2
    assert err.startswith(f"filecache: error: {binary}: not a text file")


def _peak_kib(path: Path | str) -> tuple[int, str, int]:
    """Run ``filecache replay PATH`` in a child; return its status, stderr and peak RSS (KiB)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "vcti.filecache", "replay", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    deadline = time.monotonic() + 120
    err = b""
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            err = child.stderr.read()
            child.stderr.close()
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, err.decode(), usage.ru_maxrss
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"replay of {path} did not stop within 120 s")
        time.sleep(0.05)


@pytest.mark.parametrize("source", ["/dev/zero", "nul-bytes"])
def test_a_file_without_line_breaks_fails_fast_in_bounded_memory(
    tmp_path: Path, source: str
) -> None:
    if source == "nul-bytes":
        path = tmp_path / "nul.csv"
        with open(path, "wb") as stream:
            stream.truncate(64 * 2**20)  # 64 MiB of NUL bytes (sparse)
    else:
        path = Path(source)
    good = tmp_path / "good.csv"
    good.write_text(TRACE)
    status, err, baseline = _peak_kib(good)
    assert status == 0, err
    status, err, peak = _peak_kib(path)
    assert status == 2, err
    assert err == (
        f"filecache: error: {path}:1: line longer than {MAX_LINE} characters (not a trace?)\n"
    )
    # Reading what is not a trace adds little to what a small replay takes.
    assert peak < baseline + 16 * 1024, f"peak resident {peak} KiB, {baseline} KiB for a trace"


def test_a_long_line_names_its_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "long.csv"
    path.write_text("time,key,size\n1,a,10\n2," + "k" * MAX_LINE + ",10\n3,b,10\n")
    status, out, err = run(capsys, path)
    assert status == 2
    assert out == ""
    assert err == (
        f"filecache: error: {path}:3: line longer than {MAX_LINE} characters (not a trace?)\n"
    )
    # A line of exactly the limit is read.
    path.write_text("time,key,size\n1," + "k" * (MAX_LINE - 5) + ",1\n")
    assert main(["replay", str(path), "--json"]) == 0


def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "secret.csv"
    path.write_text(TRACE)
    path.chmod(0)
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "vcti.filecache",
            "replay",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "setpriv" in result.stderr and result.returncode != 2:
        pytest.skip(f"cannot drop privileges here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"filecache: error: {path}: Permission denied\n"
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


BAD_OPTIONS = [
    (["--policy", "fifo"], "unknown policy 'fifo' (choose from lru, lfu,"),
    (["--policy", "lru,,lfu"], "unknown policy ''"),
    (["--limit", "10 parsecs"], "--limit: unknown size unit"),
    (["--limit", "-5G"], "--limit: size must not be negative"),
    (["--limit", "-5%"], "--limit: limit must not be negative"),
    (["--limit", "x%"], "--limit: invalid limit 'x%'"),
    (["--interval", "0"], "--interval must be a positive number"),
    (["--interval", "nan"], "--interval must be a positive number"),
    (["--interval", "soon"], "argument --interval: invalid float value: 'soon'"),
    (["--evict-to", "1.5"], "--evict-to must be between 0 and 1"),
    (
        ["--exact", "--interval", "5"],
        "--interval, --evict-to, --no-prompt-eviction, --prompt-delay, --max-age, "
        "--min-free and --disk apply",
    ),
    (
        ["--exact", "--evict-to", "0.5"],
        "--interval, --evict-to, --no-prompt-eviction, --prompt-delay, --max-age, "
        "--min-free and --disk apply",
    ),
    (["--plot", "figure.pdf"], "--plot: figure.pdf: the file must end in .png or .svg"),
    (["--sizes", "5%..1%"], "--limit: invalid range '5%..1%': the low end is above the high end"),
    (["--sample", "0"], "--sample must be 'auto' or in (0, 1]"),
    (["--sample", "1.5"], "--sample must be 'auto' or in (0, 1]"),
    (["--sample", "half"], "--sample must be 'auto' or in (0, 1]: half"),
    (["--sample", "0.5", "--sample-by", "bytes"], "argument --sample-by: invalid choice"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--min-free", "10G"], "--min-free and --disk go together"),
    (["--min-free", "0.1", "--disk", "big"], "--disk: "),
    (["--max-age", "-1"], "--max-age must be a positive number"),
    (["--prompt-delay", "-1"], "prompt_delay must not be negative"),
    (["--target", "speed=1%"], "--target: expected MEASURE=RATIO with MEASURE one of"),
    (["--target", "cost=lots"], "--target: 'lots' is not a ratio"),
    (["--target", "cost=150%"], "--target: '150%' is not between 0 and 100%"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS]
)
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], trace: Path, args: list[str], message: str
) -> None:
    status, out, err = run(capsys, trace, *args)
    assert status == 2
    assert out == ""
    assert err.startswith("filecache: error: " + message), err
    assert err.count("\n") == 1


def test_sizes_sample_and_deployed_settings(
    capsys: pytest.CaptureFixture[str], trace: Path
) -> None:
    status, out, err = run(
        capsys,
        trace,
        "--sizes",
        "10%..90%:3",
        "--policy",
        "lru",
        "--max-age",
        "3",
        "--min-free",
        "0.5",
        "--disk",
        "2K",
        "--jobs",
        "1",
        "--json",
    )
    assert status == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert [r["limit_bytes"] for r in record["results"]] == [150, 450, 1350]
    settings = ReplaySettings(max_age=3, min_free=0.5, disk_size=2048)
    (expected,) = replay([trace], policies=["lru"], limits=["10%..90%:3"], settings=settings)
    assert record == expected
    status, out, _ = run(capsys, trace, "--policy", "lru", "--sample", "0.5", "--json")
    assert status == 0
    assert json.loads(out)["sample"]["rate"] == 0.5
    assert json.loads(out)["sample"]["by"] == "size"  # the default
    for by in ("keys", "size"):
        status, out, _ = run(
            capsys, trace, "--policy", "lru", "--sample", "0.5", "--sample-by", by, "--json"
        )
        assert status == 0
        (expected,) = replay([trace], policies=["lru"], sample=0.5, sample_by=by)
        assert json.loads(out) == expected
    status, out, _ = run(capsys, trace, "--policy", "lru", "--sample", "0.5")
    assert status == 0
    assert "; sampled at 0.5 by size (" in out.splitlines()[0]
    # auto: a trace of fewer than 8,192 keys is replayed whole.
    status, out, _ = run(capsys, trace, "--policy", "lru", "--sample", "auto", "--json")
    assert status == 0
    assert "sample" not in json.loads(out)


def test_a_progress_bar_on_a_terminal_unless_quiet(trace: Path) -> None:
    # stderr a real terminal: the bar is drawn there, and stdout keeps the table alone.
    import pty

    for quiet in (False, True):
        leader, follower = pty.openpty()
        args = [sys.executable, "-m", "vcti.filecache", "replay", str(trace), "--jobs", "1"]
        result = subprocess.run(
            args + (["--quiet"] if quiet else []),
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
        os.close(leader)
        assert result.returncode == 0
        assert result.stdout.decode().startswith(f"{trace}: 30 requests")
        if quiet:
            assert drawn == b""
        else:
            assert f"{trace} [".encode() in drawn
            assert f"{4 * len(POLICY_NAMES)}/{4 * len(POLICY_NAMES)}".encode() in drawn


def test_no_trace_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2
    assert "the following arguments are required: TRACE" in err
