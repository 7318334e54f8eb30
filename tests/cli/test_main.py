"""The command as a whole: help, version, entry points, Ctrl-C, closed pipes, warnings."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vcti.filecache import LocalStorage, LockTimeoutError, __version__
from vcti.filecache._simulate import POLICY_NAMES
from vcti.filecache.cli import build_parser, main
from vcti.filecache.cli._common import POLICIES

from .helpers import SCRIPT, Model, Runner, build_cache, snapshot_tree


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), "run: pip install -e . (pyproject.toml declares the script)"
    assert os.access(SCRIPT, os.X_OK)


def test_help_lists_the_commands_and_exit_statuses(cli: Runner) -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.startswith("usage: filecache ")
    for word in ("stats", "ls", "evict", "rm", "clear", "exit status:", "130  interrupted"):
        assert word in result.stdout


def _subcommands() -> list[str]:
    from vcti.filecache.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)  # type: ignore[arg-type]


def test_every_subcommand_is_listed() -> None:
    assert {"demo", "stats", "ls", "evict", "rm", "clear", "verify", "exporter", "replay"} <= set(
        _subcommands()
    )


@pytest.mark.parametrize("command", _subcommands())
def test_help_of_every_subcommand(capsys: pytest.CaptureFixture[str], command: str) -> None:
    # In process, so that each parser's help is formatted by the argparse of this run
    # (a stray % in a help string is a crash only when formatted).
    status = main([command, "--help"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    assert out.startswith(f"usage: filecache {command}")
    assert "options:" in out or "optional arguments:" in out


@pytest.mark.parametrize("command", ["stats", "evict"])
def test_help_documents_the_size_units(cli: Runner, command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # undo the wrapping
    assert "K, M, G, T, P and KiB, MiB, GiB, TiB, PiB are powers of 1024" in text
    assert "KB, MB, GB, TB, PB are powers of 1000" in text


def subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    (action,) = actions
    return dict(action.choices)


def test_every_option_has_help_text() -> None:
    for name, parser in subcommands().items():
        for action in parser._actions:
            assert action.help, f"filecache {name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help != argparse.SUPPRESS


def test_help_says_which_commands_delete(cli: Runner) -> None:
    text = " ".join(cli("--help").stdout.split())
    assert "Only evict, rm, clear and 'exporter --evict' delete models" in text
    assert "stats, ls, verify and 'evict --dry-run' write nothing" in text


def test_every_policy_option_lists_the_policies_in_one_order() -> None:
    orders = {
        name: action.choices
        for name, parser in subcommands().items()
        for action in parser._actions
        if "--policy" in action.option_strings and action.choices is not None
    }
    assert sorted(orders) == ["demo", "evict", "exporter"]
    for name, choices in orders.items():
        assert list(choices) == list(POLICIES) == list(POLICY_NAMES), name


def test_sizes_read_gb_as_powers_of_1000_and_gib_as_powers_of_1024(
    cli: Runner, cache_root: Path
) -> None:
    def limit(size: str) -> int:
        result = cli("stats", cache_root, "--evict-above", size, "--json")
        return int(json.loads(result.stdout)["evict_above"])

    assert limit("2GB") == 2 * 1000**3
    assert limit("2GiB") == limit("2G") == 2 * 1024**3
    text = cli("stats", cache_root, "--evict-above", "2GB").stdout
    assert "limit:    1.9 GiB (2000000000 bytes)" in text  # printed in binary units


def test_help_of_ls_lists_the_orders(cli: Runner) -> None:
    text = " ".join(cli("ls", "--help").stdout.split())
    for order in ("lru: least recently used first", "lfu: least used first", "size: largest"):
        assert order in text


def test_version(cli: Runner) -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"filecache {__version__}\n")


_INTERRUPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from vcti.filecache import FileCache
    from vcti.filecache.cli import _stats, main

    def interrupt(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        time.sleep(30)

    if sys.argv[1] == "stats":
        _stats.scan = interrupt
    else:
        FileCache.evict = interrupt
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(
    "args", [["stats", "--json"], ["evict", "--evict-above", "1M"]], ids=["stats", "evict"]
)
def test_ctrl_c_exits_130_without_a_traceback(cache_root: Path, args: list[str]) -> None:
    command, *options = args
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT, command, str(cache_root), *options],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 130
    assert result.stderr == "filecache: error: interrupted\n"
    assert result.stdout == ""


def _pipe_capacity() -> int:
    """Bytes a pipe holds before a writer blocks (64 KiB unless the system says otherwise)."""
    read_end, write_end = os.pipe()
    try:
        return int(fcntl.fcntl(write_end, getattr(fcntl, "F_GETPIPE_SZ", 1032)))
    except OSError:
        return 65536
    finally:
        os.close(read_end)
        os.close(write_end)


def _environment(unbuffered: bool) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:  # as in most container images
        env["PYTHONUNBUFFERED"] = "1"
    return env


BUFFERING = pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])


@pytest.fixture(scope="module")
def long_listing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose listing is four times what a pipe holds (only read: ls changes nothing)."""
    capacity = _pipe_capacity()
    models = [Model(f"{'s' * 200}/{i:05d}", 1, created=i) for i in range(4 * capacity // 200)]
    return build_cache(tmp_path_factory.mktemp("long") / "cache", models)


@BUFFERING
@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_a_reader_that_leaves_early_gets_status_141(
    long_listing: Path, unbuffered: bool, json_output: bool
) -> None:
    # `filecache ls ROOT | head -c 10` with more output than the pipe holds: the command
    # is still writing when head has read its 10 bytes and exited.
    capacity = _pipe_capacity()
    root = long_listing
    command = [sys.executable, "-m", "vcti.filecache", "ls", str(root)]
    if json_output:
        command.append("--json")
    env = _environment(unbuffered)
    whole = subprocess.run(command, capture_output=True, env=env, timeout=120, check=True)
    assert len(whole.stdout) > 3 * capacity

    ls = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert ls.stdout is not None
    assert ls.stderr is not None
    head = subprocess.Popen(["head", "-c", "10"], stdin=ls.stdout, stdout=subprocess.PIPE)
    ls.stdout.close()  # head holds the only read end now
    shown, _ = head.communicate(timeout=120)
    errors = ls.stderr.read()
    ls.stderr.close()
    assert ls.wait(timeout=120) == 141
    assert head.returncode == 0
    assert shown == whole.stdout[:10]
    assert errors == b""


@BUFFERING
def test_a_reader_gone_before_a_short_output_gets_status_141(
    cache_root: Path, unbuffered: bool
) -> None:
    # The output fits in the pipe: the command sees the closed pipe only if the reader has
    # gone before it writes (otherwise it writes everything and exits 0, like `seq 3 | head
    # -c 1`). Here head reads 10 bytes from the test and exits first.
    read_end, write_end = os.pipe()
    try:
        head = subprocess.Popen(["head", "-c", "10"], stdin=read_end, stdout=subprocess.PIPE)
        os.close(read_end)
        read_end = -1
        os.write(write_end, b"0123456789")
        assert head.communicate(timeout=60)[0] == b"0123456789"
        result = subprocess.run(
            [sys.executable, "-m", "vcti.filecache", "ls", str(cache_root)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=_environment(unbuffered),
            timeout=60,
            check=False,
        )
    finally:
        if read_end >= 0:
            os.close(read_end)
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == b""


def test_reading_commands_leave_broken_metadata_alone(cli: Runner, cache_root: Path) -> None:
    meta = cache_root / "tail" / ".filecache" / "meta.json"
    meta.write_text("{not json")
    before = snapshot_tree(cache_root)
    for args in (["stats", "--json"], ["ls", "--json"], ["evict", "--evict-above=1M", "--dry-run"]):
        result = cli(args[0], cache_root, *args[1:])
        assert (result.returncode, result.stderr) == (0, "")
    entries = json.loads(cli("ls", cache_root, "--json").stdout)["entries"]
    assert [e["access_count"] for e in entries if e["key"] == "tail"] == [0]  # the defaults
    assert snapshot_tree(cache_root) == before
    assert meta.read_text() == "{not json"


def test_evict_repairs_broken_metadata_with_a_warning(cli: Runner, cache_root: Path) -> None:
    (cache_root / "tail" / ".filecache" / "meta.json").write_text("{not json")
    result = cli("evict", cache_root, "--evict-above", "3M", "--json")
    assert result.returncode == 0  # a repaired metadata file is not a failure
    removed = [e["key"] for e in json.loads(result.stdout)["removed"]]
    assert removed == ["fuselage/mesh", "engine/cfd/step9"]
    lines = result.stderr.splitlines()
    assert lines
    for line in lines:
        assert line.startswith("filecache: warning: metadata: model 'tail': ")
        assert line.endswith("rebuilt with defaults")
    repaired = cli("stats", cache_root)
    assert (repaired.returncode, repaired.stderr) == (0, "")


# -- in process: main() itself ----------------------------------------------------------


def test_main_returns_the_exit_status(
    cache_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ls", str(cache_root), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 5
    assert main(["--help"]) == 0
    assert "usage: filecache" in capsys.readouterr().out
    assert main(["evict", str(cache_root)]) == 2
    assert capsys.readouterr().err.startswith("filecache: error: ")
    assert main(["stats", str(tmp_path / "missing")]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_main_reads_sys_argv_by_default(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["filecache", "evict", str(cache_root), "--evict-above", "-2G"]
    )
    assert main() == 2
    assert capsys.readouterr().err == (
        "filecache: error: argument --evict-above: size must not be negative: '-2G'\n"
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            PermissionError(13, "Permission denied", "/srv/cache/x"),
            "/srv/cache/x: Permission denied",
        ),
        (OSError(5, "Input/output error"), "Input/output error"),
        (
            LockTimeoutError("another process has been filling 'x'"),
            "another process has been filling 'x'",
        ),
    ],
)
def test_runtime_errors_are_one_line(
    cache_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    message: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("vcti.filecache.cli._ls.scan", fail)
    assert main(["ls", str(cache_root)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"filecache: error: {message}\n"


def test_a_model_that_cannot_be_removed_is_a_warning_and_status_1(
    cache_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: LocalStorage, key: str) -> bool:
        raise PermissionError(13, "Permission denied", self.path(key))

    monkeypatch.setattr(LocalStorage, "remove", refuse)
    before = snapshot_tree(cache_root)
    assert main(["evict", str(cache_root), "--evict-above", "3M"]) == 1
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert warnings
    assert all(line.startswith("filecache: warning: evict: ") for line in warnings)
    assert "removed:  0 models, 0 B (0 bytes)" in captured.out.splitlines()
    assert any(
        line.startswith("kept:     5 models (open, or see the warnings above): fuselage/mesh")
        for line in captured.out.splitlines()
    )
    models = {p: v for p, v in snapshot_tree(cache_root).items() if "/.filecache" not in p}
    assert models == {p: v for p, v in before.items() if "/.filecache" not in p}
