"""What a hostile or unlucky user or operator broke once, each reproduced and held.

Models nested across processes, publishes racing the pruning of empty folders,
read-only trees (as a service without CAP_DAC_OVERRIDE meets them), strays in the cache's
own folders, deleted lock files, symlinks that lead out of the root, metadata that is
not a record, a generation counter that is not a file, user callbacks that raise
``KeyboardInterrupt`` or never end, and keys the filesystem would alias or refuse.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from vcti.filecache import (
    CacheEntry,
    CacheManagerConfig,
    CacheObserver,
    FileCache,
    KeyValidationError,
    LocalStorage,
    LruPolicy,
)
from vcti.filecache._observers import ObserverGroup
from vcti.filecache._runtime import Runtime
from vcti.filecache.testing import RecordingObserver

from .helpers import REPO, finish, lines, spawn, wait_for


def config(**kwargs: Any) -> CacheManagerConfig:
    kwargs.setdefault("evict_above", 10**9)
    kwargs.setdefault("interval", 3600.0)
    kwargs.setdefault("prompt_eviction", False)
    return CacheManagerConfig(**kwargs)


def opened(root: Path, **kwargs: Any) -> FileCache:
    cache = FileCache(config(**kwargs), root=root).open()
    wait_for(lambda: cache.manager.cycles >= 1)
    return cache


def fill(cache: FileCache, key: str, data: bytes = b"x" * 10) -> None:
    with cache.model(key) as model:
        Path(model.path, "data.bin").write_bytes(data)


# -- 1. a model inside a model, across processes -------------------------------------------


@pytest.mark.parametrize(("slow", "fast"), [("n", "n/b"), ("n/b", "n")])
def test_nesting_is_checked_across_processes_at_publish(
    tmp_path: Path, slow: str, fast: str
) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    first = spawn("fill_outcome", root=str(root), ready=str(ready), key=slow, seconds=1.0)
    wait_for(lambda: len(lines(ready)) == 1)
    time.sleep(0.3)
    second = spawn("fill_outcome", root=str(root), ready=str(ready), key=fast, seconds=0.0)
    outcomes = {slow: json.loads(finish(first)), fast: json.loads(finish(second))}
    assert outcomes[fast] == {"published": True, "error": None}
    assert outcomes[slow]["published"] is False
    assert outcomes[slow]["error"].startswith("KeyValidationError")
    with opened(root) as cache:
        assert [e.key for e in cache.entries()] == [fast]
        assert cache.verify().ok


# -- 2. publishing while eviction prunes the empty parent -----------------------------------


def test_publish_never_races_the_pruning_of_its_parent(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    procs = [spawn("fill_evict_loop", root=str(root), me=me, times=1500) for me in ("a", "b")]
    errors = [e for p in procs for e in json.loads(finish(p, timeout=300))["errors"]]
    assert errors == []


# -- 3. read-only trees, as a service without CAP_DAC_OVERRIDE ------------------------------


NO_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]

READ_ONLY_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from vcti.filecache import CacheManagerConfig, FileCache

root = Path(sys.argv[1])
config = CacheManagerConfig(evict_above=15, evict_to=0, interval=3600, prompt_eviction=False)
result = {}
with FileCache(config, root=root) as cache:
    while cache.manager.cycles < 1:
        time.sleep(0.01)
    with cache.model("ro") as model:  # a copy of a read-only source
        sub = Path(model.path, "input")
        sub.mkdir()
        (sub / "mesh.vtu").write_bytes(b"x" * 10)
        sub.chmod(0o555)
        Path(model.path).chmod(0o555)
    time.sleep(0.01)
    with cache.model("other") as model:
        Path(model.path, "data.bin").write_bytes(b"y" * 10)
    result["evicted"] = cache.evict(evict_above=15, evict_to=10)
    result["left"] = sorted(e.key for e in cache.entries())
    # A trash leftover with a read-only folder, as a killed eviction leaves it.
    leftover = root / ".filecache" / "trash" / "deadbeef" / "ro"
    leftover.mkdir(parents=True)
    (leftover / "f").write_bytes(b"z")
    leftover.chmod(0o555)
with FileCache(config, root=root) as cache:  # the start-up sweep deletes it
    result["trash"] = os.listdir(root / ".filecache" / "trash")
print(json.dumps(result))
"""


@pytest.fixture
def without_dac_override() -> list[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE here")
    probe = subprocess.run(
        [*NO_BYPASS, sys.executable, "-c", "pass"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return NO_BYPASS


def test_read_only_trees_are_evicted_and_swept(
    tmp_path: Path, without_dac_override: list[str]
) -> None:
    root = tmp_path / "cache"
    run = subprocess.run(
        [*without_dac_override, sys.executable, "-c", READ_ONLY_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result == {"evicted": ["ro"], "left": ["other"], "trash": []}


# -- 4. strays in the cache's own folders ---------------------------------------------------


def test_strays_in_internal_folders_are_removed_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    opened(root).close()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"p")
    internal = root / ".filecache"
    (internal / "trash" / "a-file").write_bytes(b"x")
    os.symlink(outside, internal / "trash" / "a-link")
    (internal / "staging" / "a-file").write_bytes(b"x")
    os.symlink(outside, internal / "staging" / "a-link")
    (internal / "locks" / "0000.lock").mkdir()
    os.symlink(outside, internal / "locks" / "0001.lock")

    recorder = RecordingObserver()
    with opened(root, observer=recorder) as cache:  # opens, whatever it finds
        fill(cache, "m")
        sweeps = [e for e, c in recorder.errors() if c == "sweep"]
        assert sweeps, "strays are reported"
        assert "unexpected entries" in str(sweeps[0])
        for folder in ("trash", "staging"):
            assert not {"a-file", "a-link"} & set(os.listdir(internal / folder))
        for lock in (internal / "locks").iterdir():  # fill locks only: regular files
            assert lock.is_file()
            assert not lock.is_symlink()
    assert (outside / "precious").read_bytes() == b"p"  # never followed


# -- 5. deleted lock files --------------------------------------------------------------


def test_a_live_fill_survives_deleted_lock_files_and_a_sweep(tmp_path: Path) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    filler = spawn("fill_outcome", root=str(root), ready=str(ready), key="k", seconds=1.5)
    wait_for(lambda: len(lines(ready)) == 1)
    for lock in (root / ".filecache" / "locks").iterdir():
        lock.unlink()  # an operator cleaning up
    LocalStorage(root).sweep()  # what another process does when it starts
    assert json.loads(finish(filler)) == {"published": True, "error": None}
    with opened(root) as cache, cache.model("k") as model:
        assert not model.new
        assert Path(model.path, "data.bin").stat().st_size == 100  # complete, not empty


def test_a_held_model_survives_deleted_lock_files_and_a_repair(tmp_path: Path) -> None:
    root, ready = tmp_path / "cache", tmp_path / "ready"
    with opened(root) as cache:
        fill(cache, "held")
    holder = spawn("hold", root=str(root), ready=str(ready), key="held")
    try:
        wait_for(lambda: len(lines(ready)) == 1)
        for path in (root / "held" / ".filecache").iterdir():
            if path.name != "meta.json":
                path.unlink()
        for path in (root / ".filecache" / "locks").iterdir():
            path.unlink()
        with opened(root, evict_above=1, evict_to=0) as cache:
            cache.verify(repair=True)
            assert cache.evict() == []
            assert cache.storage.is_model("held")
    finally:
        holder.kill()
        holder.communicate(timeout=30)


# -- 6. symlinks that lead out of the root --------------------------------------------------


def test_nothing_is_written_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    with opened(root) as cache:
        # A fill that replaces the model's .filecache by a link to an outside folder.
        def link_out(model: Any) -> None:
            Path(model.path, ".filecache").rmdir()
            os.symlink(outside, Path(model.path, ".filecache"))

        with pytest.raises(FileExistsError, match="reserves"), cache.model("a") as model:
            link_out(model)
        assert not cache.storage.is_model("a")
        # A folder of the key's path that links out of the root.
        (root / "x").symlink_to(outside)
        with pytest.raises(KeyValidationError, match="symlink"), cache.model("x/m"):
            pass
        # Dangling links where the cache's own files are, then a repair.
        fill(cache, "b")
        os.symlink(outside / "pin-target", root / "b" / ".filecache" / "pin.lock")
        (root / "b" / ".filecache" / "meta.json").unlink()
        os.symlink(outside / "meta-target", root / "b" / ".filecache" / "meta.json")
        cache.verify(repair=True)
        assert cache.verify().ok
    assert list(outside.iterdir()) == []  # nothing was created outside the root


# -- 7. metadata that is not a record ------------------------------------------------------


@pytest.mark.parametrize("kind", ["deep", "folder", "fifo", "huge"])
def test_bad_metadata_is_rebuilt_never_fatal(tmp_path: Path, kind: str) -> None:
    recorder = RecordingObserver()
    with opened(tmp_path, observer=recorder, evict_above=15, evict_to=0) as cache:
        fill(cache, "bad")
        fill(cache, "good")
        meta = tmp_path / "bad" / ".filecache" / "meta.json"
        meta.unlink()
        if kind == "deep":
            meta.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "folder":
            meta.mkdir()
        elif kind == "fifo":
            os.mkfifo(meta)
        else:
            meta.write_bytes(b" " * (1 << 20))
        report = cache.verify()
        assert any("model 'bad'" in p for p in report.problems)
        snapshot = cache.manager.run_once()  # scans, rebuilds, evicts: no hang, no crash
        assert snapshot is not None
        assert not snapshot.is_over_limit
        assert any(c == "metadata" for _, c in recorder.errors())
        assert not any(c in ("scan", "cycle") for _, c in recorder.errors())
        assert cache.verify().ok


def test_the_command_line_reports_bad_metadata_without_a_traceback(tmp_path: Path) -> None:
    with opened(tmp_path) as cache:
        fill(cache, "m")
    meta = tmp_path / "m" / ".filecache" / "meta.json"
    meta.write_text("[" * 100_000 + "]" * 100_000)
    for command in ("stats", "ls", "verify"):
        run = subprocess.run(
            [sys.executable, "-m", "vcti.filecache", command, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in run.stderr, (command, run.stderr)
        assert run.returncode in (0, 1), (command, run.stderr)


# -- 8. silent undercounting: a change journal that is not a file ----------------------------


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_broken_journal_is_reported_and_walked_past(tmp_path: Path, kind: str) -> None:
    recorder = RecordingObserver()
    with opened(tmp_path, observer=recorder) as cache:
        fill(cache, "a")
        cache.manager.run_once()
        journal = tmp_path / ".filecache" / "journal"
        journal.unlink()
        if kind == "folder":
            journal.mkdir()
        else:
            journal.symlink_to(tmp_path / "nowhere")
        cache.manager.run_once()  # the journal is seen broken: reported, and scans walk
        assert any(c == "scan" and "journal" in str(e) for e, c in recorder.errors())
        fill_elsewhere = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys
                    from pathlib import Path
                    from vcti.filecache import CacheManagerConfig, FileCache
                    config = CacheManagerConfig(evict_above=10**9, interval=3600)
                    with FileCache(config, root=sys.argv[1]) as cache:
                        with cache.model("b") as model:
                            Path(model.path, "data.bin").write_bytes(b"y" * 5)
                    """
                ),
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert fill_elsewhere.returncode == 0, fill_elsewhere.stderr
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert sorted(e.key for e in snapshot.entries) == ["a", "b"]  # within a cycle


# -- 9. user callbacks that raise KeyboardInterrupt or never end ----------------------------


class Interrupting(CacheObserver):
    def __init__(self, hook: str, error: type[BaseException]) -> None:
        self.hook = hook
        self.error = error
        self.armed = True

    def __getattribute__(self, name: str) -> Any:
        get = object.__getattribute__
        if name == get(self, "hook") and get(self, "armed"):

            def raising(*args: object) -> None:
                raise get(self, "error")()

            return raising
        return get(self, name)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_callback_raising_in_the_background_is_reported(
    tmp_path: Path, error: type[BaseException]
) -> None:
    recorder = RecordingObserver()
    interrupting = Interrupting("on_scan_end", error)
    cache = FileCache(config(interval=0.05, observer=[interrupting, recorder]), root=tmp_path)
    with cache:
        wait_for(lambda: len([e for e, c in recorder.errors() if c == "observer"]) >= 3)
        assert cache.manager.is_running  # the manager went on
        assert error.__name__ in str(recorder.errors()[0][0])

    class Stopping:
        name = "stopping"

        def order(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
            raise error()

    recorder = RecordingObserver()
    settings = config(interval=0.05, evict_above=1, policy=Stopping(), observer=recorder)
    with FileCache(settings, root=tmp_path / "policy") as cache:
        fill(cache, "m")
        wait_for(lambda: len([e for e, c in recorder.errors() if c == "policy"]) >= 3)
        assert cache.manager.is_running


def test_ctrl_c_in_an_observer_during_a_miss_releases_everything(tmp_path: Path) -> None:
    interrupting = Interrupting("on_access", KeyboardInterrupt)
    with opened(tmp_path, observer=interrupting, lock_timeout=5.0) as cache:
        with pytest.raises(KeyboardInterrupt), cache.model("k"):
            pytest.fail("the body must not run")
        interrupting.armed = False
        assert os.listdir(tmp_path / ".filecache" / "staging") == []  # no leaked fill
        with cache.model("k") as model:  # no "filling" mark left behind: no timeout
            assert model.new
        assert cache.verify().ok


def test_ctrl_c_in_the_caller_releases_a_fill(tmp_path: Path) -> None:
    with opened(tmp_path, lock_timeout=5.0) as cache:

        def interrupted_fill() -> None:
            with cache.model("k") as model:
                Path(model.path, "half.bin").write_bytes(b"x")
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted_fill()
        assert cache.get_entry("k") is None
        with cache.model("k") as model:
            assert model.new
        assert cache.verify().ok


def test_an_endless_policy_cannot_hang_eviction(tmp_path: Path) -> None:
    class Endless:
        name = "endless"

        def order(self, entries: Sequence[CacheEntry]) -> Any:
            return itertools.cycle(entries)

    class EndlessSelection:
        def select_evictions(self, entries: list[CacheEntry], required_free: int) -> Any:
            return itertools.cycle(entries[:1])

    with opened(tmp_path, evict_above=25, evict_to=0) as cache:
        for key in ("a", "b", "c"):
            fill(cache, key)
        with cache.model("a"), cache.model("b"), cache.model("c"):
            for policy in (Endless(), EndlessSelection()):
                thread = threading.Thread(target=cache.evict, args=(policy,), daemon=True)
                thread.start()
                thread.join(30)
                assert not thread.is_alive(), "eviction hung"
        assert sorted(cache.evict(Endless())) == ["a", "b", "c"]


# -- 10. keys the filesystem would alias or refuse -----------------------------------------


@pytest.mark.parametrize("key", ["\udcc3\udca9", "a/\ud800", "x" * 255 + "/" + "y" * 3000])
def test_keys_that_cannot_be_stored_faithfully_are_refused(tmp_path: Path, key: str) -> None:
    with opened(tmp_path) as cache:
        with pytest.raises(KeyValidationError):
            cache.model(key)
        fill(cache, "é")
        assert [e.key for e in cache.entries()] == ["é"]


# -- 14. a ModelDir after its context ------------------------------------------------------


def test_model_path_names_the_published_model_after_the_fill(tmp_path: Path) -> None:
    with opened(tmp_path) as cache:
        with cache.model("m") as model:
            staging = model.path
            Path(model.path, "f").write_bytes(b"1")
        assert model.path == str(tmp_path / "m") != staging
        assert Path(model.path, "f").read_bytes() == b"1"


# -- 15. a cycle that found models gone ----------------------------------------------------


def test_a_cycle_reports_what_is_left_when_another_evicted_first(tmp_path: Path) -> None:
    with opened(tmp_path, evict_above=15, evict_to=10) as cache:
        for key in ("a", "b", "c"):
            fill(cache, key)
            time.sleep(0.01)
        stale = cache.snapshot()
        cache.evict(LruPolicy())  # another eviction removes a and b first
        assert not cache.storage.is_model("a")
        runtime = Runtime.for_storage(cache.storage)  # the cycle's own step, on the stale scan
        _, after = runtime.evictor.evict(
            ObserverGroup(()), cache.config, LruPolicy(), "background", stale
        )
        assert [e.key for e in after.entries] == ["c"]
        assert not after.is_over_limit
