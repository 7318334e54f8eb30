"""Helpers for the ``filecache`` command tests: cache roots, a runner, output checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vcti.filecache import CacheManagerConfig, FileCache

#: The fake clock's epoch when a test cache is built: 2023-11-14 22:13:20 UTC.
BASE = 1_700_000_000.0

#: The console script, installed next to the interpreter.
SCRIPT = Path(sys.executable).parent / "filecache"

KIB = 1024


@dataclass(frozen=True)
class Model:
    """A model to build: its size, when it was created and when it was opened again.

    Times are seconds after :data:`BASE`.
    """

    key: str
    size: int
    created: float
    accesses: tuple[float, ...] = ()

    @property
    def access_count(self) -> int:
        return 1 + len(self.accesses)

    @property
    def last_access(self) -> float:
        return BASE + max((self.created, *self.accesses))


# Five models whose lru, lfu, size and age orders all differ (see test_cli_ls.py).
MODELS = (
    Model("wing/run1", 300 * KIB, created=0, accesses=(50_000, 50_001)),
    Model("wing/run2", 700 * KIB, created=1_000, accesses=(60_000,)),
    Model("fuselage/mesh", 1536 * KIB, created=2_000),
    Model("tail", 100 * KIB, created=3_000, accesses=(40_000,)),
    Model("engine/cfd/step9", 2048 * KIB, created=4_000, accesses=(4_500, 4_600)),
)
TOTAL = sum(m.size for m in MODELS)  # 4684 KiB


def build_cache(root: Path, models: Iterable[Model] = MODELS) -> Path:
    """Create a cache root holding ``models``, with the library, on a fake clock."""
    models = list(models)
    now = [BASE]
    config = CacheManagerConfig(evict_above=2**62, interval=3600, clock=lambda: now[0])
    with FileCache(root=root, config=config) as cache:
        for model in models:
            now[0] = BASE + model.created
            with cache.model(model.key) as folder:
                (Path(folder.path) / "data.bin").write_bytes(b"x" * model.size)
        for when, key in sorted((t, m.key) for m in models for t in m.accesses):
            now[0] = BASE + when
            with cache.model(key):
                pass
    return root


def local_time(epoch: float) -> str:
    """``epoch`` as the command shows it when TZ=UTC."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def snapshot_tree(top: Path) -> dict[str, tuple[str, int, int]]:
    """Every path below ``top`` (``top`` included) with its kind, size and mtime."""
    tree: dict[str, tuple[str, int, int]] = {}
    if not top.exists():
        return tree
    for path in [top, *top.rglob("*")]:
        st = path.lstat()
        kind = "dir" if path.is_dir() else "file"
        size = 0 if kind == "dir" else st.st_size
        tree[str(path.relative_to(top.parent))] = (kind, size, st.st_mtime_ns)
    return tree


def run_cli(
    *args: str | os.PathLike[str], invocation: str = "module"
) -> subprocess.CompletedProcess[str]:
    """Run the command in a child process, with TZ=UTC, and capture its output.

    Its stdin is /dev/null, as in a script or a cron job: ``rm`` and ``clear`` ask nothing
    (see test_confirm.py for a terminal).
    """
    command = [sys.executable, "-m", "vcti.filecache"] if invocation == "module" else [str(SCRIPT)]
    return subprocess.run(
        [*command, *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=120,
        check=False,
    )


Runner = Callable[..., subprocess.CompletedProcess[str]]


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], status: int, message: str
) -> None:
    """The command failed with ``status`` and one line ``filecache: error: ...MESSAGE...``."""
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("filecache: error: ")
    assert message in lines[0], lines[0]
