"""Measuring many model folders in a child process, away from the parent's GIL.

A full walk is one ``lstat`` per file, each a few bytecodes of Python around a system
call; in the manager's thread that competes with the hits of the other threads for the
interpreter lock, which the interpreter hands over only every few milliseconds. A child
process does the walk instead, and the manager's thread waits on a pipe, holding nothing.

The child runs :data:`WALKER`, a self-contained script (no import of this package, so
it starts in a few tens of milliseconds): it reads a JSON list of folders from stdin and
writes, for each folder it could measure, ``[index, bytes]``; a folder it could not
measure (gone, unreadable) is left out, for the parent to measure and report.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Sequence

#: The child's script: the same walk as ``_fs.tree_size`` (regular files, no symlinks
#: followed, the top folder's own ``.filecache`` left out).
WALKER = r"""
import json, os, sys
skip = sys.argv[1]
paths = json.load(sys.stdin)
out = []
for index, top in enumerate(paths):
    total, stack = 0, [top]
    try:
        while stack:
            folder = stack.pop()
            try:
                entries = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError):
                if folder == top:
                    raise
                continue
            with entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if not (folder == top and entry.name == skip):
                                stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
    except OSError:
        continue
    out.append([index, total])
json.dump(out, sys.stdout)
"""


def measure(folders: Sequence[str], skip: str, timeout: float = 3600.0) -> dict[int, int]:
    """Bytes below each of ``folders`` by index, measured in a child process.

    Raises:
        OSError: the child could not be run, or failed.
    """
    try:
        run = subprocess.run(
            [sys.executable, "-I", "-S", "-c", WALKER, skip],
            input=json.dumps(list(folders)),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise OSError(errno.EIO, f"the walker process could not run: {exc}") from exc
    if run.returncode != 0:
        raise OSError(errno.EIO, f"the walker process failed: {run.stderr.strip()[-500:]}")
    try:
        return {int(index): int(size) for index, size in json.loads(run.stdout)}
    except (ValueError, TypeError) as exc:
        raise OSError(errno.EIO, f"the walker process answered nonsense: {exc}") from exc
