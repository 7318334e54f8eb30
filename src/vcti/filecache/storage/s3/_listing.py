"""What one listing of an S3 cache root shows, sorted out by model and attempt.

Object layout below the root prefix ``P`` (``A`` is an attempt id, 16 hex digits)::

    P.filecache/leader                 the leader lease
    P.filecache/models/KEY/head        KEY's head: a claim, the published model, or vacant
    P.filecache/policy/NAME            the state of an eviction policy
    P.filecache/probe/ID               the server check's object, while a storage checks
    PKEY/.filecache/A/...              the files of attempt A of KEY (the model's URI ends here)
    PKEY/.filecache/A.meta             the metadata record of attempt A
    PKEY/.filecache/A.pins/HOST-N      a pin of attempt A held by a process

Anything else below ``P`` is a stray object: it belongs to no model and no fill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..._keys import RESERVED, validate_key
from ...exceptions import KeyValidationError
from ._head import ATTEMPT_LEN, HeadState, is_attempt

INTERNAL = f"{RESERVED}/"
INNER = f"/{RESERVED}/"
LEADER = f"{INTERNAL}leader"
MODELS = f"{INTERNAL}models/"
HEAD = "/head"
POLICY = f"{INTERNAL}policy/"
PROBE = f"{INTERNAL}probe/"
META = ".meta"
PINS = ".pins/"


def ancestors_or_self(folder: str) -> list[str]:
    """``"a/b/c"`` gives ``["a", "a/b", "a/b/c"]``; the root folder ``""`` gives ``[]``."""
    if not folder:
        return []
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def valid_key(key: str) -> bool:
    """True if ``key`` could be a model key (object names are not trusted)."""
    try:
        validate_key(key)
    except KeyValidationError:
        return False
    return True


def head_key(rel: str) -> str | None:
    """The key whose head is the object ``rel`` (relative to the root), or None."""
    if rel.startswith(MODELS) and rel.endswith(HEAD):
        key = rel[len(MODELS) : -len(HEAD)]
        if valid_key(key):
            return key
    return None


def split_attempt_object(rel: str) -> tuple[str, str, str, str] | None:
    """``(key, attempt, kind, rest)`` for an object of an attempt; None for anything else.

    ``kind`` is ``data`` (``rest`` is the file's name in the model), ``meta`` or ``pin``
    (``rest`` is the pin's name).
    """
    at = rel.find(INNER)
    if at <= 0:
        return None
    key, tail = rel[:at], rel[at + len(INNER) :]
    attempt, rest = tail[:ATTEMPT_LEN], tail[ATTEMPT_LEN:]
    if not is_attempt(attempt) or not valid_key(key):
        return None
    if rest.startswith("/") and len(rest) > 1:
        return key, attempt, "data", rest[1:]
    if rest == META:
        return key, attempt, "meta", ""
    if rest.startswith(PINS) and len(rest) > len(PINS):
        return key, attempt, "pin", rest[len(PINS) :]
    return None


@dataclass
class Listing:
    """The heads, attempts, pins and strays seen by one listing of a root.

    Keys are relative to the root prefix; pins and strays are recorded by their full
    object names. Sizes count the user's files only. ``models``, ``sizes``, ``claims``
    and ``nested`` are filled in when the heads are resolved (``Catalog.resolve``).
    """

    taken: float
    heads: dict[str, str] = field(default_factory=dict)  # key -> ETag
    attempts: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> attempt -> bytes
    metas: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> attempt -> ETag
    pins: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)
    strays: dict[str, int] = field(default_factory=dict)  # folder -> bytes
    stray_names: list[str] = field(default_factory=list)
    leader: str | None = None
    models: dict[str, str] = field(default_factory=dict)  # published key -> attempt
    sizes: dict[str, int] = field(default_factory=dict)
    claims: dict[str, HeadState] = field(default_factory=dict)  # heads not published
    nested: list[tuple[str, str]] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)

    @property
    def staging(self) -> int:
        """Bytes of attempts that are not published: fills in progress and leftovers."""
        return sum(
            size
            for key, attempts in self.attempts.items()
            for attempt, size in attempts.items()
            if self.models.get(key) != attempt
        )

    def unpublished(self, key: str) -> list[str]:
        """The attempts of ``key`` that its published head (if any) does not name."""
        published = self.models.get(key)
        return sorted(a for a in self.attempts.get(key, {}) if a != published)

    def attempt_pins(self, key: str, attempt: str) -> list[tuple[str, str]]:
        """The pin objects of one attempt: ``(name, etag)``."""
        return self.pins.get(key, {}).get(attempt, [])

    @classmethod
    def build(cls, objects: Iterable[tuple[str, int, str]], taken: float, prefix: str) -> Listing:
        """Sort out ``(relative key, size, etag)`` tuples below ``prefix``."""
        listing = cls(taken)
        for rel, size, etag in objects:
            if rel.startswith(INTERNAL):
                key = head_key(rel)
                if key is not None:
                    listing.heads[key] = etag
                elif rel == LEADER:
                    listing.leader = etag
                elif not any(rel.startswith(p) and len(rel) > len(p) for p in (POLICY, PROBE)):
                    listing._stray(prefix, rel, size)
                continue
            found = split_attempt_object(rel)
            if found is None:
                listing._stray(prefix, rel, size)
                continue
            key, attempt, kind, _ = found
            sizes = listing.attempts.setdefault(key, {})
            sizes[attempt] = sizes.get(attempt, 0) + (size if kind == "data" else 0)
            if kind == "meta":
                listing.metas.setdefault(key, {})[attempt] = etag
            elif kind == "pin":
                pins = listing.pins.setdefault(key, {}).setdefault(attempt, [])
                pins.append((prefix + rel, etag))
        return listing

    def _stray(self, prefix: str, rel: str, size: int) -> None:
        folder = rel.rpartition("/")[0]
        self.strays[folder] = self.strays.get(folder, 0) + size
        self.stray_names.append(prefix + rel)

    def settle(self) -> None:
        """Compute sizes and nesting once ``models`` is known."""
        self.sizes = {k: self.attempts.get(k, {}).get(a, 0) for k, a in self.models.items()}
        self.nested = []
        for key in sorted(self.models):
            outer = next((a for a in ancestors_or_self(key)[:-1] if a in self.models), None)
            if outer is not None:
                self.nested.append((outer, key))
