"""The change journal: cycles that touch only what changed, and what happens when it breaks.

A cycle reads the journal and measures only the models recorded there; sizes recorded
at publish are trusted by a new process; a model opened through the library is measured
again at the next cycle; a damaged, missing or rotated journal falls back to a walk (a
full one, reported, when something was lost).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vcti.filecache import CacheManagerConfig, FileCache, LocalStorage
from vcti.filecache.storage._journal import writer
from vcti.filecache.storage.base import PeerRequest
from vcti.filecache.testing import RecordingObserver

from .helpers import REPO, disk_total, lines, wait_for


class Counting(LocalStorage):
    """Counts what a scan measures and stamps."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sized: list[str] = []
        self.stamped: list[str] = []

    def model_size(self, key: str) -> int:
        self.sized.append(key)
        return super().model_size(key)

    def model_sizes(self, keys: Any) -> dict[str, int]:
        self.sized.extend(keys)
        return super().model_sizes(keys)

    def iter_stamped_models(self, prefix: str = "", onerror: Any = None) -> Any:
        self.stamped.append(prefix)
        return super().iter_stamped_models(prefix, onerror)

    def read_metas(self, keys: Any) -> Any:
        self.stamped.extend(keys)  # the leader's cycle stamps them in the measuring process
        return super().read_metas(keys)

    def walk_models(self) -> Any:
        walked, errors = super().walk_models()  # the leader's full walk, in one pass there
        self.stamped.append("")
        self.sized.extend(key for key, _, _, size in walked if size is not None)
        return walked, errors

    def reset(self) -> None:
        self.sized.clear()
        self.stamped.clear()


def config(**kwargs: Any) -> CacheManagerConfig:
    kwargs.setdefault("evict_above", 10**9)
    kwargs.setdefault("interval", 3600.0)
    kwargs.setdefault("prompt_eviction", False)
    kwargs.setdefault("full_scan_every", None)
    return CacheManagerConfig(**kwargs)


def fill(cache: FileCache, key: str, size: int = 10) -> None:
    with cache.model(key) as model:
        Path(model.path, "data.bin").write_bytes(b"x" * size)


def test_a_cycle_touches_only_what_changed(tmp_path: Path) -> None:
    storage = Counting(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for n in range(20):
            fill(cache, f"m/{n:02d}")
        cache.manager.run_once()
        storage.reset()
        cache.manager.run_once()  # nothing changed: nothing stamped, nothing measured
        assert (storage.stamped, storage.sized) == ([], [])
        fill(cache, "new")
        with cache.model("m/03") as model:  # opened, and rewritten in place
            Path(model.path, "data.bin").write_bytes(b"y" * 25)
        storage.reset()
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert sorted(storage.stamped) == ["m/03", "new"]
        assert storage.sized == ["m/03"]  # "new" recorded its size as it was published
        assert {e.key: e.size for e in snapshot.entries}["m/03"] == 25
        assert snapshot.total_size == disk_total(tmp_path)  # what a cold walk finds


def test_a_new_process_trusts_recorded_sizes(tmp_path: Path) -> None:
    with FileCache(config(), root=tmp_path) as cache:
        for n in range(10):
            fill(cache, f"m/{n}", 100 + n)
        cache.manager.run_once()
    storage = Counting(tmp_path)
    with FileCache(config(), storage=storage) as cache:  # a restart: a cold scan
        wait_for(lambda: cache.manager.cycles >= 1)
        assert storage.sized == []  # every size was recorded with its stamps
        assert cache.snapshot().total_size == sum(100 + n for n in range(10))


def test_opening_a_model_in_another_process_makes_it_measured(tmp_path: Path) -> None:
    storage = Counting(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        fill(cache, "a")
        fill(cache, "b")
        cache.manager.run_once()
        script = (
            "import sys\n"
            "from pathlib import Path\n"
            "from vcti.filecache import CacheManagerConfig, FileCache\n"
            "with FileCache(CacheManagerConfig(evict_above=10**9), root=sys.argv[1]) as c:\n"
            "    with c.model('a') as m:\n"
            "        Path(m.path, 'more.bin').write_bytes(b'z' * 7)\n"
        )
        run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
        assert run.returncode == 0
        storage.reset()
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert storage.sized == ["a"]
        assert {e.key: e.size for e in snapshot.entries} == {"a": 17, "b": 10}


def test_a_damaged_journal_means_a_full_walk_reported(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage = Counting(tmp_path)
    with FileCache(config(observer=recorder), storage=storage) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b", "c"):
            fill(cache, key)
        cache.manager.run_once()
        Path(storage.path("b"), "data.bin").write_bytes(b"q" * 40)  # behind its back
        journal = tmp_path / ".filecache" / "journal"
        with open(journal, "ab") as f:
            f.write(b'["m","a"')  # a process killed in the middle of a line...
        fill(cache, "d")  # ...and another's line after it
        storage.reset()
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        errors = [e for e, c in recorder.errors() if c == "scan"]
        assert errors
        assert "damaged" in str(errors[0])
        assert sorted(storage.sized) == ["a", "b", "c", "d"]  # a full walk
        assert snapshot.total_size == disk_total(tmp_path)


def test_a_missing_journal_means_a_full_walk_reported(tmp_path: Path) -> None:
    recorder = RecordingObserver()
    storage = Counting(tmp_path)
    with FileCache(config(observer=recorder), storage=storage) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        for key in ("a", "b"):
            fill(cache, key)
        cache.manager.run_once()
        (tmp_path / ".filecache" / "journal").unlink()
        storage.reset()
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert any("missing" in str(e) for e, c in recorder.errors() if c == "scan")
        assert sorted(storage.sized) == ["a", "b"]
        fill(cache, "c")  # the next change makes a new journal: back to reading it
        storage.reset()
        cache.manager.run_once()
        assert storage.sized == []


def test_run_once_full_takes_in_changes_behind_the_librarys_back(tmp_path: Path) -> None:
    with FileCache(config(), root=tmp_path) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)
        fill(cache, "a")
        cache.manager.run_once()
        Path(cache.storage.path("a"), "extra.bin").write_bytes(b"e" * 5)
        snapshot = cache.manager.run_once()
        assert snapshot is not None
        assert snapshot.total_size == 10  # the journal knows nothing of it
        snapshot = cache.manager.run_once(full=True)
        assert snapshot is not None
        assert snapshot.total_size == 15


WRITER = """
import os, sys
from pathlib import Path
from vcti.filecache import CacheManagerConfig, FileCache
config = CacheManagerConfig(evict_above=10**9, interval=3600, prompt_eviction=False)
n = 0
with FileCache(config, root=sys.argv[1]) as cache:
    print("ready", flush=True)
    while True:
        key = f"w/{os.getpid()}/{n % 7}"
        with cache.model(key) as model:
            if model.new:
                Path(model.path, "data.bin").write_bytes(b"x" * (n % 50 + 1))
        if n % 5 == 0:
            cache.remove(key)
        n += 1
"""


def test_writers_killed_mid_journal_leave_a_root_that_adds_up(tmp_path: Path) -> None:
    for round_ in range(6):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(tmp_path)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.1 * round_)
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        with FileCache(config(), root=tmp_path) as cache:
            wait_for(lambda cache=cache: cache.manager.cycles >= 1)
            snapshot = cache.manager.run_once()
            assert snapshot is not None
            assert snapshot.total_size == disk_total(tmp_path), round_
            cache.verify(repair=True)
            assert cache.verify().ok, round_


FILL_ONE = """
import sys
from pathlib import Path
from vcti.filecache import CacheManagerConfig, FileCache
config = CacheManagerConfig(evict_above=10**9, interval=3600, prompt_eviction=False)
with FileCache(config, root=sys.argv[1]) as cache, cache.model("theirs") as model:
    Path(model.path, "data.bin").write_bytes(b"t" * 20)
"""


def test_the_journal_tells_this_processs_publishes_from_the_others(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        fill(cache, "first")
        cursor = storage.read_changes(None).cursor
        fill(cache, "mine", 10)
        subprocess.run(
            [sys.executable, "-c", FILL_ONE, str(tmp_path)], cwd=REPO, check=True, timeout=60
        )
        changes = storage.read_changes(cursor)
    assert changes.keys is not None
    assert {"mine", "theirs"} <= changes.keys
    assert (changes.published, changes.published_here) == (30, 10)


def test_the_journal_tells_the_lookups_of_other_processes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.open()
    journal = storage._journal
    start = storage.read_peer_requests(None)  # from the end: nothing before it is told
    assert start.keys is None
    assert start.requests == ()
    # This process's own lines, and its helper's on its behalf, are not another's lookups.
    journal.record("p", "own", 10, lookups={"at": 1.0, "fill": 0.5})
    journal.record("m", "own", lookups={"n": 2, "last": 3.0, "since": 1.5}, on_behalf=writer())
    # Another process's lines (written here on its behalf).
    journal.record("p", "a", 100, lookups={"at": 5.0, "fill": 0.25}, on_behalf="peer")
    journal.record("m", "a", lookups={"n": 3, "last": 7.0, "since": 5.5}, on_behalf="peer")
    journal.record("m", "gone", lookups={"n": 1, "last": 8.0}, on_behalf="peer")
    journal.record("m", "b", on_behalf="peer")  # a size recorded: no lookup
    journal.record("p", "c", 10, on_behalf="peer")  # as 2.0.0 wrote it: no lookup told
    journal.record("m", "d", lookups={"n": 0, "last": 9.0}, on_behalf="peer")  # none added
    journal.record("p", "e", 10, lookups={"at": "soon"}, on_behalf="peer")  # not a time
    journal.record("r", "a", on_behalf="peer")
    changes = storage.read_peer_requests(start.cursor)
    assert changes.keys == {"own", "a", "gone", "b", "c", "d", "e"}
    assert changes.published == 130
    assert changes.requests == (
        PeerRequest("a", 5.0, size=100, fill=0.25),
        PeerRequest("a", 7.0, hits=3, since=5.5),
        PeerRequest("gone", 8.0, hits=1),
    )
    # The cycle's own reads do not collect them.
    assert storage.read_changes(start.cursor).requests == ()
    assert storage.read_peer_requests(changes.cursor).requests == ()


def test_publishes_and_accesses_written_behind_record_their_lookups(tmp_path: Path) -> None:
    config = CacheManagerConfig(evict_above=10**9, interval=3600)
    with FileCache(root=tmp_path / "root", config=config) as cache:
        wait_for(lambda: cache.manager.cycles >= 1)  # the cycle at start writes nothing then
        before = time.time()
        for _ in range(3):
            with cache.model("m") as model:
                if model.new:
                    Path(model.path, "data.bin").write_bytes(b"x" * 100)
        cache.manager.flush()
    items = [json.loads(line) for line in lines(tmp_path / "root" / ".filecache" / "journal")]
    published = [i for i in items if i[0] == "p"]
    assert len(published) == 1
    assert published[0][:3] == ["p", "m", 100]
    assert before <= published[0][-1]["at"] <= time.time()
    assert published[0][-1]["fill"] >= 0
    written = [i[-1] for i in items if i[0] == "m" and isinstance(i[-1], dict)]
    assert [w["n"] for w in written] == [2]  # the two hits; the fill was the record's first
    assert published[0][-1]["at"] <= written[0]["since"] <= written[0]["last"] <= time.time()


def test_a_rotated_journal_still_tells_what_was_published_since(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with FileCache(config(), storage=storage) as cache:
        fill(cache, "before", 7)
        cursor = storage.read_changes(None).cursor
        journal = tmp_path / ".filecache" / "journal"
        rotated = tmp_path / ".filecache" / "journal.new"
        rotated.write_bytes(b"")
        rotated.replace(journal)  # as the leader's sweep starts a new file
        fill(cache, "after", 30)
        changes = storage.read_changes(cursor)
    assert changes.keys is None  # what changed before the new file is unknown: a walk
    assert changes.error is None
    assert changes.published == 30
