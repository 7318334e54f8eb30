"""Helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcti.filecache import FileCache, ModelInfo
from vcti.filecache.storage.base import CacheStorage
from vcti.filecache.testing import MemoryStorage


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """A storage and how a user writes and reads model files on it."""

    name: str
    storage: CacheStorage

    def write(self, path: str, name: str, data: bytes) -> None:
        if isinstance(self.storage, MemoryStorage):
            self.storage.write_file(f"{path}/{name}", data)
        else:
            (Path(path) / name).write_bytes(data)

    def read(self, path: str, name: str) -> bytes:
        if isinstance(self.storage, MemoryStorage):
            return self.storage.read_file(f"{path}/{name}")
        return (Path(path) / name).read_bytes()


def fill(backend: Backend, cache: FileCache, key: str, size: int) -> None:
    """Create model ``key`` holding ``size`` bytes."""
    with cache.model(key) as model:
        assert model.new
        backend.write(model.path, "data.bin", b"x" * size)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Run the block with the coverage tracer paused, if the suite runs under coverage.

    For a block that replays a large workload through code that smaller tests cover
    already: what it proves is its result, and traced line by line it runs about three
    times as slow.
    """
    try:
        import coverage
    except ImportError:
        yield
        return
    current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


REPO = Path(__file__).resolve().parents[1]


def spawn(mode: str, **args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", mode, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def disk_total(root: Path) -> int:
    """Bytes of user files under ``root``, by a fresh walk that skips the cache's own files."""
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".filecache"]
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_size
    return total


class DirectoriesV1:
    """A backend written to 1.0's CacheStorage protocol, as a 1.0 user might have.

    A directory per model with 1.0's ``.cache_meta`` file; ``calls`` records the
    methods that change something, in order.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[str] = []
        root.mkdir(parents=True, exist_ok=True)

    def key(self) -> str:
        return f"dirs:{self.root}"

    def create_dir(self, rel_path: str) -> None:
        self.calls.append("create_dir")
        (self.root / rel_path).mkdir(parents=True, exist_ok=True)

    def delete_dir(self, rel_path: str) -> None:
        self.calls.append("delete_dir")
        shutil.rmtree(self.root / rel_path)

    def dir_exists(self, rel_path: str) -> bool:
        return (self.root / rel_path).is_dir()

    def model_path(self, rel_path: str) -> str:
        return str(self.root / rel_path)

    def read_meta(self, rel_path: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / rel_path / ".cache_meta").read_text())
        except (OSError, ValueError):
            return {"size": 0, "access_count": 0}
        return data if isinstance(data, dict) else {"size": 0, "access_count": 0}

    def write_meta(
        self, rel_path: str, data: dict[str, Any], *, preserve_mtime: bool = False
    ) -> None:
        self.calls.append("write_meta")
        (self.root / rel_path / ".cache_meta").write_text(json.dumps(data))

    def touch_access(self, rel_path: str) -> None:
        os.utime(self.root / rel_path / ".cache_meta")

    def scan_entries(self) -> list[ModelInfo]:
        found = []
        for meta in self.root.rglob(".cache_meta"):
            rel = str(meta.parent.relative_to(self.root))
            data = self.read_meta(rel)
            found.append(
                ModelInfo(
                    rel, self.compute_dir_size(rel), meta.stat().st_mtime, data["access_count"]
                )
            )
        return found

    def compute_dir_size(self, rel_path: str) -> int:
        return sum(
            p.stat().st_size
            for p in (self.root / rel_path).rglob("*")
            if p.is_file() and p.name != ".cache_meta"
        )

    def cleanup_temp_files(self) -> None:
        self.calls.append("cleanup_temp_files")


def is_vacant_object(client: Any, bucket: str, key: str) -> bool:
    """True if ``key`` is a head or lease that was released: a vacant body, kept."""
    if not key.endswith(("/head", "/leader")):
        return False
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return b'"state":"vacant"' in body
