"""The trees the benchmarks share within one run, built once and removed at the end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ._common import Settings, Stopwatch, build_tree, model_key

#: Bytes of the one file in every model of the tiny tree.
TINY_FILE_BYTES = 512


class Workspace:
    """Builds the benchmark trees lazily under the work dir and remembers shared results.

    Attributes:
        settings: the run's settings.
        log: progress output.
        cold_scan_seconds: the cold-scan time measured by the scan benchmark, once known.
        full_walk_seconds: the time of the full reconciling walk (``run_once(full=True)``)
            measured by the scan benchmark (the steady-state benchmark compares against
            it), once known.
    """

    def __init__(self, settings: Settings, log: Stopwatch) -> None:
        self.settings = settings
        self.log = log
        self.cold_scan_seconds: float | None = None
        self.full_walk_seconds: float | None = None
        self._extra: dict[str, Path] = {}
        self._tiny: Path | None = None
        self._tree: Path | None = None
        self._tree_bytes = 0
        self._generation = 0
        self._diskcache: Path | None = None

    @property
    def path(self) -> Path:
        """The work dir."""
        return self.settings.workdir

    def tiny_tree(self) -> Path:
        """A root of ``settings.keys`` models with one small file each."""
        if self._tiny is None:
            root = self.path / "tiny"
            self.log.say(f"building the tiny tree: {self.settings.keys:,} models x 1 file")
            build_tree(root, self.settings.keys, 1, TINY_FILE_BYTES)
            self._tiny = root
        return self._tiny

    def tree(self) -> tuple[Path, int]:
        """The scan tree (``models`` x ``files_per_model`` files of 1-4 KiB) and its bytes."""
        if self._tree is None:
            s = self.settings
            self._generation += 1
            root = self.path / f"tree{self._generation}"
            self.log.say(
                f"building the tree: {s.models:,} models x {s.files_per_model} files "
                f"({s.models * s.files_per_model:,} files)"
            )
            self._tree_bytes = build_tree(root, s.models, s.files_per_model)
            self._tree = root
            self.log.say("tree built")
        return self._tree, self._tree_bytes

    def consume_tree(self) -> None:
        """Forget the scan tree (a destructive benchmark changed it); the next use rebuilds."""
        self._tree = None
        self.cold_scan_seconds = None
        self.full_walk_seconds = None

    def extra_tree(self, name: str, models: int, files_per_model: int, file_bytes: int) -> Path:
        """A root of its own, ``name``, built once: ``models`` x ``files_per_model`` files."""
        root = self._extra.get(name)
        if root is None:
            root = self.path / name
            self.log.say(f"building the {name} tree: {models:,} models x {files_per_model} files")
            build_tree(root, models, files_per_model, file_bytes)
            self._extra[name] = root
        return root

    def diskcache_dir(self) -> Path | None:
        """A python-diskcache directory holding the tiny tree's keys; None if not installed."""
        if importlib.util.find_spec("diskcache") is None:
            return None
        if self._diskcache is None:
            import diskcache  # noqa: PLC0415 - optional: the benchmarks run without it

            directory = self.path / "diskcache"
            tiny = self.tiny_tree()
            with diskcache.Cache(str(directory), eviction_policy="least-recently-used") as dc:
                for i in range(self.settings.keys):
                    key = model_key(i)
                    dc.set(key, str(tiny / key))
            self._diskcache = directory
        return self._diskcache
