"""Object names, listings and cached metadata of one S3 cache root."""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ._client import ConditionFailedError, S3Calls
from ._lease import Observations
from ._listing import FILLS, INNER, KEY_FILE, LEADER, MARKER, PINS, Listing

# A scan is iter_models() followed by model_size(), read_meta() and staging_size() for
# what it yielded; those reuse its listing for this long instead of asking S3 again.
_SCAN_REUSE = 30.0
_META_WORKERS = 8  # concurrent GETs of changed metadata after a listing
_META_PATIENCE = 60.0  # seconds of conditional writes lost to other hosts before giving up


class Catalog:
    """Names the objects of a root and remembers what listings and reads showed.

    The latest listing of the whole root (its models' sizes, markers' ETags, fills,
    leases and pins) and each model's metadata with its ETag are kept, so a scan costs
    its listing pages plus one GET per model whose metadata changed since it was read.
    """

    def __init__(self, calls: S3Calls, prefix: str, root: str, observations: Observations) -> None:
        self.calls = calls
        self.prefix = prefix
        self.root = root
        self.clock = observations.clock
        self.observations = observations
        self.lock = threading.Lock()
        self.listing: Listing | None = None  # the latest listing of the whole root
        self._scan: Listing | None = None  # the latest one made by a scan
        self.metas: dict[str, tuple[str, bytes]] = {}  # key -> (ETag, metadata)

    # -- names --------------------------------------------------------------------------

    def path(self, key: str) -> str:
        """The model's URI."""
        return f"{self.root}/{key}"

    def key_of(self, staged: str) -> str:
        """The key of a model URI."""
        head = self.root + "/"
        if not staged.startswith(head) or len(staged) == len(head):
            raise ValueError(f"{staged!r} is not a model path of {self.root}")
        return staged[len(head) :]

    def under(self, key: str) -> str:
        """The prefix of the model's objects."""
        return f"{self.prefix}{key}/"

    def marker(self, key: str) -> str:
        """The model's completion marker (and metadata)."""
        return f"{self.prefix}{key}{INNER}{MARKER}"

    def key_file(self, key: str) -> str:
        """The object a fill writes first, naming its prefix's key."""
        return f"{self.prefix}{key}{INNER}{KEY_FILE}"

    def pin_prefix(self, key: str) -> str:
        """The prefix of the model's pin objects."""
        return f"{self.prefix}{key}{INNER}{PINS}"

    def fill_name(self, key: str) -> str:
        """The model's fill lease."""
        return f"{self.prefix}{FILLS}{key}"

    @property
    def leader_name(self) -> str:
        """The leader lease."""
        return f"{self.prefix}{LEADER}"

    # -- listings -----------------------------------------------------------------------

    def list(self, below: str) -> Listing:
        """List the objects below ``PREFIX + below`` and sort them out."""
        start = len(self.prefix)
        objects = self.calls.list(self.prefix + below)
        listing = Listing.build(
            ((o.key[start:], o.size, o.etag, o.modified) for o in objects), 0.0, self.prefix
        )
        listing.taken = self.clock()
        for key, (etag, _) in listing.fills.items():
            self.observations.unchanged_for(self.fill_name(key), etag)
        for pins in listing.pins.values():
            for name, etag in pins:
                self.observations.unchanged_for(name, etag)
        return listing

    def list_root(self, *, scan: bool = False) -> Listing:
        """List the whole root; a ``scan`` also fetches the metadata that changed."""
        listing = self.list("")
        alive = {self.fill_name(k) for k in listing.fills}
        alive.update(name for pins in listing.pins.values() for name, _ in pins)
        fills = self.prefix + FILLS
        self.observations.keep_only(
            alive, lambda name: name.startswith(fills) or INNER + PINS in name
        )
        with self.lock:
            self.listing = listing
            for key in [k for k in self.metas if k not in listing.markers]:
                del self.metas[key]
        if scan:
            self._prefetch_metas(listing)
            listing.taken = self.clock()
            with self.lock:
                self._scan = listing
        return listing

    def fresh_scan(self) -> Listing | None:
        """The listing of the scan in progress (made moments ago), if any."""
        scan = self._scan
        if scan is not None and self.clock() - scan.taken < _SCAN_REUSE:
            return scan
        return None

    def _prefetch_metas(self, listing: Listing) -> None:
        """GET the metadata that changed since it was last read, a few at a time."""
        with self.lock:
            wanted = [k for k in listing.sizes if self.metas.get(k, ("",))[0] != listing.markers[k]]
        if len(wanted) < 2:
            return  # read_meta() will GET it

        def fetch(key: str) -> None:
            try:
                body, etag = self.calls.get(self.marker(key))
            except OSError:
                return  # read_meta() will try again and report
            with self.lock:
                self.metas[key] = (etag, body)
                listing.markers[key] = etag

        with ThreadPoolExecutor(min(_META_WORKERS, len(wanted))) as pool:
            list(pool.map(fetch, wanted))

    def patch(self, key: str, *, published: bool = False, gone: bool = False) -> None:
        """Bring the kept listings up to date with a change this process made."""
        with self.lock:
            for listing in (self.listing, self._scan):
                if listing is None:
                    continue
                listing.groups.pop(key, None)
                if published:
                    listing.dirty.add(key)
                if gone:
                    listing.sizes.pop(key, None)
                    listing.markers.pop(key, None)
            if gone:
                self.metas.pop(key, None)

    def forget_fill(self, key: str) -> None:
        """Forget the fill lease of ``key`` (released after a reclaim)."""
        with self.lock:
            for listing in (self.listing, self._scan):
                if listing is not None:
                    listing.fills.pop(key, None)

    # -- sizes and metadata -------------------------------------------------------------

    def model_size(self, key: str) -> int:
        """The bytes of model ``key``, from the scan in progress or from a listing."""
        with self.lock:
            scan = self.fresh_scan()
            if scan is not None and key in scan.sizes and key not in scan.dirty:
                return scan.sizes[key]
        listing = self.list(key + "/")
        if key not in listing.sizes:
            raise FileNotFoundError(errno.ENOENT, "no such model", self.path(key))
        return listing.sizes[key]

    def staging_size(self) -> int:
        """The bytes outside every model."""
        with self.lock:
            scan = self.fresh_scan()
            if scan is not None:
                return scan.staging
        return self.list_root().staging

    def remember(self, key: str, etag: str, meta: bytes) -> None:
        """Remember model ``key``'s metadata as written or read with ``etag``."""
        with self.lock:
            self.metas[key] = (etag, meta)
            for listing in (self.listing, self._scan):
                if listing is not None and key in listing.markers:
                    listing.markers[key] = etag

    def read_meta(self, key: str) -> bytes:
        """The metadata, unchanged since the scan's listing or read again."""
        with self.lock:
            scan, cached = self.fresh_scan(), self.metas.get(key)
            if scan is not None and cached is not None and scan.markers.get(key) == cached[0]:
                return cached[1]
        body, etag = self.calls.get(self.marker(key))
        with self.lock:
            self.metas[key] = (etag, body)
        return body

    def update_meta(self, key: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the metadata with ``update(current)``: a GET and a conditional PUT.

        The PUT carries ``IfMatch`` with the ETag that was read, so a concurrent update
        from another host makes it fail (412); it is then read again and redone, so no
        increment is ever lost. The ETag and body kept from a scan or from this process's
        previous write save the GET when nothing changed since.
        """
        name = self.marker(key)
        with self.lock:
            cached = self.metas.get(key)
        deadline = self.clock() + _META_PATIENCE
        attempt = 0
        while self.clock() < deadline:
            attempt += 1
            if cached is None:
                body, etag = self.calls.get(name)
            else:
                etag, body = cached
            new = update(body)
            try:
                new_etag = self.calls.put(name, new, if_match=etag)
            except FileNotFoundError:
                self.patch(key, gone=True)
                raise
            except ConditionFailedError as exc:
                current, current_etag = self.calls.get(name)
                if not exc.retried or current != new:  # not our own retried write landing
                    cached = (current_etag, current)
                    time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** min(attempt, 10))))
                    continue
                new_etag = current_etag
            self.remember(key, new_etag, new)
            return
        raise OSError(
            errno.EBUSY,
            f"the metadata kept changing for {_META_PATIENCE:.0f}s ({attempt} updates lost)",
            self.path(key),
        )
