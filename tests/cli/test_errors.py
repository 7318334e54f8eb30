"""Bad input: one line on stderr, the right exit status, no traceback, nothing changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import Runner, assert_one_line_error, snapshot_tree

USAGE = 2
FAILURE = 1

# Arguments after the subcommand's ROOT; the cache is over every limit used here, so a
# command that wrongly went ahead would delete something.
BAD_ARGUMENTS = [
    (["evict", "{root}", "--evict-above", "5X"], "unknown size unit 'X' in '5X'"),
    (["evict", "{root}", "--evict-above", "5 GBB"], "unknown size unit 'GBB'"),
    (["evict", "{root}", "--evict-above", "1.5"], "a byte count must be a whole number"),
    (["evict", "{root}", "--evict-above", "lots"], "invalid size 'lots'"),
    (["evict", "{root}", "--evict-above", ""], "empty size"),
    (["evict", "{root}", "--evict-above=-5G"], "size must not be negative: '-5G'"),
    (["evict", "{root}", "--evict-above", "-5G"], "size must not be negative: '-5G'"),
    (["evict", "{root}", "--evict-above", "-1"], "size must not be negative: '-1'"),
    (["evict", "{root}", "--evict-above", "1M", "--evict-to", "-.5K"], "must not be negative"),
    (
        ["evict", "{root}", "--evict-above", "1M", "--evict-to", "2M"],
        "--evict-to 2.0 MiB (2097152 bytes) must not be greater than "
        "--evict-above 1.0 MiB (1048576 bytes)",
    ),
    (["evict", "{root}", "--evict-above", "1M", "--policy", "fifo"], "invalid choice: 'fifo'"),
    (["evict", "{root}", "--evict-above", "1M", "--policy"], "expected one argument"),
    (["evict", "{root}"], "the following arguments are required: --evict-above"),
    (["evict", "{root}", "--evict-to", "1M"], "required: --evict-above"),
    (["evict", "--evict-above", "1M"], "the following arguments are required: ROOT"),
    (["evict", "{root}", "--evict-above", "1M", "--force"], "unrecognized arguments: --force"),
    (["stats", "{root}", "--evict-above", "12Q"], "unknown size unit 'Q'"),
    (["stats", "{root}", "extra"], "unrecognized arguments: extra"),
    (["stats", ""], "ROOT must not be empty"),
    (["ls", "{root}", "--sort", "newest"], "invalid choice: 'newest'"),
    (["ls", "{root}", "--prefix", "../wing"], "argument --prefix: model key '../wing' has a '..'"),
    (["ls", "{root}", "--prefix", "/wing"], "argument --prefix: model key '/wing' is absolute"),
    (["ls", "{root}", "--prefix", "wing//run1"], "must not contain empty or '.' parts"),
    (["ls", "{root}", "--prefix", ""], "argument --prefix: model key must not be empty"),
    (["ls", "{root}", "--prefix", ".filecache"], "uses the reserved name '.filecache'"),
    (["ls", "{root}", "--prefix"], "argument --prefix: expected one argument"),
    (["stats", "{root}", "--by-prefix", "0"], "must be a positive whole number, got '0'"),
    (["stats", "{root}", "--by-prefix=-1"], "must be a positive whole number, got '-1'"),
    (["stats", "{root}", "--by-prefix", "1.5"], "must be a positive whole number, got '1.5'"),
    (["stats", "{root}", "--by-prefix", "two"], "must be a positive whole number, got 'two'"),
    (["stats", "{root}", "--by-prefix", ""], "must be a positive whole number, got ''"),
    (["stats", "{root}", "--by-prefix"], "argument --by-prefix: expected one argument"),
    (["rm", "{root}"], "the following arguments are required: KEY"),
    (["rm", "{root}", "tail", "../tail"], "argument KEY: model key '../tail' has a '..' part"),
    (["rm", "{root}", "tail", "/tail"], "argument KEY: model key '/tail' is absolute"),
    (["rm", "{root}", "tail", "wing//run1"], "must not contain empty or '.' parts"),
    (["rm", "{root}", "tail", "wing/./run1"], "must not contain empty or '.' parts"),
    (["rm", "{root}", "tail", ""], "argument KEY: model key must not be empty"),
    (["rm", "{root}", "tail", "wing\\run1"], "must not contain a backslash or NUL"),
    (["rm", "{root}", "tail", ".filecache/trash"], "uses the reserved name '.filecache'"),
    (["rm", "{root}", "tail", "x" * 256], "has a part longer than 255 bytes"),
    (["rm", "{root}", "tail", "--timeout", "0"], "must be a positive number of seconds, got '0'"),
    (["rm", "{root}", "tail", "--timeout=-1"], "must be a positive number of seconds, got '-1'"),
    (["rm", "{root}", "tail", "--timeout", "inf"], "must be a positive number of seconds"),
    (["rm", "{root}", "tail", "--timeout", "nan"], "must be a positive number of seconds"),
    (["rm", "{root}", "tail", "--timeout", "soon"], "not a number of seconds: 'soon'"),
    (["rm", "{root}", "tail", "--force"], "unrecognized arguments: --force"),
    (["clear", "{root}"], "clear removes every model not open; add --yes to confirm"),
    (["clear", "{root}", "--json"], "add --yes to confirm (nothing was deleted)"),
    (["clear", "{root}", "tail", "--yes"], "unrecognized arguments: tail"),
    (["clear", "--yes"], "the following arguments are required: ROOT"),
    (["ls"], "the following arguments are required: ROOT"),
    ([], "the following arguments are required: COMMAND"),
    (["fsck", "{root}"], "invalid choice: 'fsck'"),
    (["--evict-above", "1M"], "argument COMMAND: invalid choice: '1M'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_usage_errors(
    cli: Runner, cache_root: Path, args: list[str], message: str
) -> None:
    before = snapshot_tree(cache_root.parent)
    result = cli(*(arg.format(root=cache_root) for arg in args))
    assert_one_line_error(result, USAGE, message)
    assert snapshot_tree(cache_root.parent) == before


COMMANDS = [
    ["stats", "{root}"],
    ["stats", "{root}", "--json"],
    ["ls", "{root}"],
    ["ls", "{root}", "--json"],
    ["evict", "{root}", "--evict-above", "0"],
    ["evict", "{root}", "--evict-above", "0", "--json"],
    ["evict", "{root}", "--evict-above", "0", "--dry-run"],
    ["rm", "{root}", "tail"],
    ["rm", "{root}", "tail", "--json"],
    ["clear", "{root}", "--yes"],
    ["clear", "{root}", "--yes", "--json"],
    ["ls", "{root}", "--prefix", "wing"],
    ["stats", "{root}", "--by-prefix", "1"],
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_root_is_a_runtime_error(cli: Runner, tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no" / "such" / "root"
    result = cli(*(arg.format(root=missing) for arg in command))
    assert_one_line_error(result, FAILURE, f"{missing}: no such directory")
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("command", COMMANDS)
def test_a_foreign_directory_is_not_touched(
    cli: Runner, tmp_path: Path, command: list[str]
) -> None:
    foreign = tmp_path / "results"
    (foreign / "run1").mkdir(parents=True)
    (foreign / "run1" / "pressure.vtu").write_bytes(b"p" * 5000)
    (foreign / "notes.txt").write_text("keep me")
    before = snapshot_tree(foreign)
    result = cli(*(arg.format(root=foreign) for arg in command))
    assert_one_line_error(result, FAILURE, f"{foreign}: not a cache root")
    assert snapshot_tree(foreign) == before
    assert not (foreign / ".filecache").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_is_not_a_root(cli: Runner, tmp_path: Path, command: list[str]) -> None:
    file = tmp_path / "cache.tar"
    file.write_bytes(b"not a directory")
    before = snapshot_tree(tmp_path)
    result = cli(*(arg.format(root=file) for arg in command))
    assert_one_line_error(result, FAILURE, f"{file}: not a directory")
    assert snapshot_tree(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_model_directory_is_not_a_root(cli: Runner, cache_root: Path, command: list[str]) -> None:
    # A model directory has a .filecache/ folder too; opening a cache there would nest
    # a cache layout inside the model.
    model = cache_root / "wing" / "run1"
    before = snapshot_tree(cache_root)
    result = cli(*(arg.format(root=model) for arg in command))
    assert_one_line_error(result, FAILURE, f"{model}: a model directory, not a cache root")
    assert snapshot_tree(cache_root) == before


def test_a_relative_root_is_reported_as_given(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vcti.filecache", "ls", "missing-root"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert_one_line_error(result, FAILURE, "filecache: error: missing-root: no such directory")
    assert list(tmp_path.iterdir()) == []
