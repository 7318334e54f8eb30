"""What one listing of an S3 cache root shows, sorted out by model.

Object layout below the root prefix ``P``::

    P.filecache/leader                   the leader lease
    P.filecache/fills/KEY                the fill lease of model KEY (also held while deleting it)
    PKEY/.filecache/key                  written when a fill of KEY starts: names the prefix
    PKEY/.filecache/pins/HOST-N          a pin of KEY held by a process (copied from the marker)
    PKEY/.filecache/meta.json            the completion marker and metadata, written last
    PKEY/...                             the model's files
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ..._keys import RESERVED

INTERNAL = f"{RESERVED}/"
INNER = f"/{RESERVED}/"
MARKER = "meta.json"
KEY_FILE = "key"
PINS = "pins/"
LEADER = f"{INTERNAL}leader"
FILLS = f"{INTERNAL}fills/"


def ancestors_or_self(folder: str) -> list[str]:
    """``"a/b/c"`` gives ``["a", "a/b", "a/b/c"]``; the root folder ``""`` gives ``[]``."""
    if not folder:
        return []
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


@dataclass
class Listing:
    """The models, fills, leases and pins seen by one listing.

    Keys are relative to the root prefix. Sizes count the user's objects only.
    """

    taken: float
    sizes: dict[str, int] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)
    nested: list[tuple[str, str]] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)
    strays: dict[str, int] = field(default_factory=dict)
    fills: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    pins: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # key -> (name, etag)
    key_files: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)

    @property
    def staging(self) -> int:
        """Bytes outside every model: fills in progress, leftovers, stray objects."""
        return sum(self.groups.values()) + sum(self.strays.values())

    @classmethod
    def build(
        cls, objects: Iterable[tuple[str, int, str, datetime | None]], taken: float, prefix: str
    ) -> Listing:
        """Sort out ``(relative key, size, etag, modified)`` tuples below ``prefix``.

        Pins are recorded by their full object names.
        """
        listing = cls(taken)
        folders: dict[str, int] = {}
        for rel, size, etag, modified in objects:
            if rel.startswith(INTERNAL):
                if rel.startswith(FILLS) and len(rel) > len(FILLS):
                    listing.fills[rel[len(FILLS) :]] = (etag, modified)
                continue
            at = rel.find(INNER)
            if at > 0:
                key, tail = rel[:at], rel[at + len(INNER) :]
                if tail == MARKER:
                    listing.markers[key] = etag
                elif tail == KEY_FILE:
                    listing.key_files.add(key)
                elif tail.startswith(PINS):
                    listing.pins.setdefault(key, []).append((prefix + rel, etag))
                continue
            folder = rel.rpartition("/")[0]
            folders[folder] = folders.get(folder, 0) + size
        listing._sort_out(folders)
        return listing

    def _sort_out(self, folders: dict[str, int]) -> None:
        for key in sorted(self.markers):
            outer = next((a for a in ancestors_or_self(key)[:-1] if a in self.sizes), None)
            if outer is None:
                self.sizes[key] = 0
            else:
                self.nested.append((outer, key))
        for folder, size in folders.items():
            chain = ancestors_or_self(folder)
            owner = next((a for a in chain if a in self.sizes), None)
            if owner is not None:
                self.sizes[owner] += size
                continue
            fill = next((a for a in reversed(chain) if a in self.key_files), None)
            if fill is not None:
                self.groups[fill] = self.groups.get(fill, 0) + size
            else:
                self.strays[folder] = self.strays.get(folder, 0) + size
        for key in self.key_files:
            if key not in self.markers and not any(a in self.sizes for a in ancestors_or_self(key)):
                self.groups.setdefault(key, 0)
