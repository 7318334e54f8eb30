"""The inotify watch the leader of a local root sleeps on between cycles."""

from __future__ import annotations

import select
import shutil
from pathlib import Path

import pytest

from vcti.filecache.storage._inotify import FolderWatch, available


def readable(watch: FolderWatch, timeout: float = 0.0) -> bool:
    return bool(select.select([watch.fileno()], [], [], timeout)[0])


def test_inotify_is_available() -> None:
    assert available()  # the platform the library is written for (flock, /proc) has it


def test_a_write_a_new_file_and_a_rename_wake_it(tmp_path: Path) -> None:
    watch = FolderWatch(str(tmp_path))
    try:
        assert not readable(watch)
        (tmp_path / "journal").write_bytes(b"a\n")  # created, written
        assert readable(watch, 10.0)
        watch.clear()
        assert not readable(watch)
        with (tmp_path / "journal").open("ab") as journal:
            journal.write(b"b\n")
        assert readable(watch, 10.0)
        watch.clear()
        (tmp_path / "new").write_bytes(b"")
        watch.clear()
        (tmp_path / "new").replace(tmp_path / "journal")  # a rotation
        assert readable(watch, 10.0)
    finally:
        watch.close()


def test_a_folder_deleted_and_made_again_is_watched_again(tmp_path: Path) -> None:
    folder = tmp_path / "internal"
    folder.mkdir()
    watch = FolderWatch(str(folder))
    try:
        shutil.rmtree(folder)
        assert readable(watch, 10.0)
        watch.clear()  # the watch is gone, and the folder too: nothing to watch yet
        folder.mkdir()
        watch.clear()  # what the leader does before each wait: watched again
        (folder / "journal").write_bytes(b"a\n")
        assert readable(watch, 10.0)
    finally:
        watch.close()


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FolderWatch(str(tmp_path / "missing"))
