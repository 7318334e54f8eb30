"""Live what-if simulations: the miss ratio the cache would have at other sizes.

:class:`WhatIfSimulations` is fed the requests a cache serves (``model()`` lookups, the
sizes its fills publish) and replays them, as they come, through miniature caches of the
configured policy and of a few others at multiples of the limit: the deployed mode of
``filecache replay`` (:mod:`._simulate`), one request at a time, with the same policy
objects and the same victim walk. The requests are only queued in the caller's thread (a
hash of the key and, for a sampled key, an append); :meth:`WhatIfSimulations.update`
replays them later, in the manager's thread, in the order of their times.

In the process that leads a local root, the requests of the other processes come too
(:meth:`WhatIfSimulations.peer_requests`, from the journal, at each cycle): a miss when
its fill publishes, with its lookup's time; hits when they are written behind, as a
count with the time of the last one. Those hits are spread evenly over the ``interval``
before the last one (not before the model's previous access; all at the last one's time
where the record had none): their own times are not recorded. As they arrive late (a
hit is written behind up to an interval after it came, and the leader reads it at its
next cycle), the leader holds every request back by as long as the last batch's oldest
one took to arrive (at most three intervals), then replays them together in time order:
the gauges lag by as much. A request that comes later still is replayed as if it came
then.

Memory is bounded by fixed-size spatial sampling (SHARDS, Waldspurger et al., FAST 2015,
section 4.3; the miniature simulations of USENIX ATC 2017): every key is sampled while the
cache has seen at most ``max_keys`` of them, so a small cache is simulated exactly; past
that, the key with the largest hash leaves the sample, the sampling threshold drops to its
hash, and each miniature cache shrinks to ``rate x`` its size. Each miss ratio is the
sample's misses, each counted ``1 / rate`` (the rate when it came), over every request
the cache served, sampled or not: SHARDS's adjustment, which keeps a very popular key
that happens to be in (or out of) the sample from swaying the estimate with its hits.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING

from ._entry import CacheEntry
from ._sample import SPACE, key_hash
from ._simulate import POLICY_NAMES, ReplaySettings, _Cycle, _Run, make_entry
from ._trace import Trace
from ._victims import is_stateful, policy_name

if TYPE_CHECKING:
    from ._config import CacheManagerConfig
    from .policies.base import EvictionPolicy
    from .storage.base import PeerRequest

__all__ = ["WhatIf", "WhatIfSimulations"]


@dataclass(frozen=True)
class WhatIf:
    """Which what-if simulations to keep: sizes, policies and a memory bound.

    Attributes:
        sizes: the cache sizes simulated, as multiples of its limit (``evict_above``).
        policies: built-in policies simulated besides the cache's own.
        max_keys: the most keys the sample holds; a cache that has seen more is sampled
            (see :mod:`vcti.filecache.replay`'s ``sample``) at ``max_keys`` over the keys
            seen.
        max_pending: requests queued between two updates; more are dropped (and counted).

    Raises:
        ValueError: no size, a size that is not positive, an unknown policy, or a bound
            below 1.
    """

    sizes: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    policies: tuple[str, ...] = ("lru",)
    max_keys: int = 4096
    max_pending: int = 100_000

    def __post_init__(self) -> None:
        if not self.sizes or not all(0 < size < float("inf") for size in self.sizes):
            raise ValueError(f"sizes must be positive multiples of the limit: {self.sizes}")
        for name in self.policies:
            if name not in POLICY_NAMES:
                raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICY_NAMES)})")
        if self.max_keys < 1 or self.max_pending < 1:
            raise ValueError("max_keys and max_pending must be at least 1")


#: The longest the requests are held back, in intervals: a hit is written behind up to an
#: interval after it came (and spread up to one before the last), and the leader reads it
#: at its next cycle.
MAX_LAG = 3


def size_label(factor: float) -> str:
    """The label of a size that is ``factor`` times the limit: ``"0.5x"``, ``"2x"``."""
    return f"{factor:g}x"


#: The requests of the sampled keys: (time, key, hash, size or None, fill seconds or None).
_Request = tuple[float, str, int, "int | None", "float | None"]

#: The miniature caches' runs need a trace only for its costs, which they do not count.
_NO_TRACE = Trace("what-if")


class _Miniature:
    """One policy at one size: the deployed replay's loop body, a request at a time."""

    def __init__(self, policy: EvictionPolicy | str, limit: int, settings: ReplaySettings) -> None:
        self.run = run = _Run(_NO_TRACE, policy, limit)
        self.state = run.policy.new_state() if is_stateful(run.policy) else None  # type: ignore[attr-defined]
        self.cycle = _Cycle(run, settings, self.state)
        self.interval = settings.interval
        self.prompt = settings.prompt_eviction
        self.evict_to = settings.evict_to
        self.next_cycle: float | None = None
        self.now = 0.0
        #: The misses, each counted ``1 / rate`` (the rate when it came).
        self.misses = 0.0

    def request(self, now: float, key: str, size: int, fill: float | None, weight: float) -> None:
        run, cycle, state, recency = self.run, self.cycle, self.state, self.cycle.recency
        now = self.now = max(self.now, now)
        if self.next_cycle is None:
            self.next_cycle = now + self.interval
        elif now >= self.next_cycle:
            cycle.run(now)
            self.next_cycle += self.interval * (1 + int((now - self.next_cycle) // self.interval))
        cached = run.cached
        entry = cached.get(key)
        if entry is not None:
            entry = make_entry(
                key, entry.size, entry.access_count + 1, now, entry.created, entry.fill_seconds
            )
            cached[key] = entry
            if state is not None:
                state.access(entry, 1)
            if recency is not None:
                recency[key] = now
                recency.move_to_end(key)
            return
        self.misses += weight
        entry = make_entry(key, size, 1, now, now, fill)
        cached[key] = entry
        if state is not None:
            state.insert(entry)
        if recency is not None:
            recency[key] = now
        run.used += size
        if self.prompt and run.used > cycle.trigger:
            cycle.run(now)
            self.next_cycle = now + self.interval

    def forget(self, key: str) -> None:
        """Drop ``key`` (it left the sample)."""
        entry = self.run.cached.pop(key, None)
        if entry is None:
            return
        self.run.used -= entry.size
        if self.state is not None:
            self.state.forget(key)
        if self.cycle.recency is not None:
            self.cycle.recency.pop(key, None)

    def resize(self, limit: int) -> None:
        """Make the cache ``limit`` bytes (the sample shrank); evict down to it."""
        self.run.limit = self.cycle.trigger = limit
        self.cycle.target = int(self.evict_to * limit)
        if self.run.used > limit:
            self.cycle.run(self.now)


class WhatIfSimulations:
    """Miniature caches of one cache's policies at several sizes, fed by its requests.

    The hooks (:meth:`access`, :meth:`filled`, :meth:`sized`) may be called from any
    thread; :meth:`update` and :meth:`miss_ratios` from one thread at a time.

    Args:
        config: the cache's configuration: its limit, policy and eviction settings.
        whatif: the sizes, extra policies and bounds.
        clock: the time of a request (default: the config's clock).
    """

    def __init__(
        self,
        config: CacheManagerConfig,
        whatif: WhatIf,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.whatif = whatif
        self.limit = config.evict_above
        self._clock = clock or config.clock
        self._interval = config.interval
        settings = ReplaySettings.from_config(config)  # min_free needs the disk: not modelled
        own = policy_name(config.policy)
        # A built-in policy by name gets the miniature's clock; another is used as given
        # (a stateful one gets a fresh state per miniature).
        policies: dict[str, EvictionPolicy | str] = {
            own: own if own in POLICY_NAMES else config.policy  # type: ignore[dict-item]
        }
        for name in whatif.policies:
            policies.setdefault(name, name)
        self._miniatures = {
            (name, factor): _Miniature(policy, self._scaled(factor, 1.0), settings)
            for name, policy in policies.items()
            for factor in whatif.sizes
        }
        #: Keys whose hash is below this are sampled (all of them at first).
        self.threshold = SPACE
        self._sampled: dict[str, int] = {}  # key -> last known size
        self._largest: list[tuple[int, str]] = []  # (-hash, key): the sample's largest hash first
        self._lock = threading.Lock()  # guards the queue and the misses waiting for their fill
        self._queue: list[_Request] = []
        self._waiting: dict[str, tuple[float, int, float | None]] = {}
        self._scanned: Sequence[CacheEntry] = ()
        self._sizes: dict[str, int] | None = None
        #: Requests dropped: the queue was full, or a hit's size was unknown.
        self.dropped = 0
        #: Every request served (sampled or not), as far as the last update: hits
        #: counted at once, misses when their fill publishes.
        self.requests = 0
        self._served = 0
        #: Seconds the requests are held back before they are replayed: how late the
        #: other processes' requests arrive (0 while none do).
        self._lag = 0.0
        self._held: list[_Request] = []  # requests newer than that, for the next update

    @property
    def rate(self) -> float:
        """The share of the keys sampled now."""
        return self.threshold / SPACE

    @property
    def simulated(self) -> tuple[tuple[str, float], ...]:
        """(policy, size as a multiple of the limit) of each miniature cache."""
        return tuple(self._miniatures)

    @property
    def sampled_keys(self) -> int:
        """Keys in the sample."""
        return len(self._sampled)

    def _scaled(self, factor: float, rate: float) -> int:
        return max(1, round(self.limit * factor * rate))

    def _enqueue(self, request: _Request) -> None:
        """Queue a sampled request (the lock held)."""
        if len(self._queue) < self.whatif.max_pending:
            self._queue.append(request)
        else:
            self.dropped += 1

    def access(self, key: str, hit: bool) -> None:
        """A lookup of ``key``: a hit is queued now, a miss when its fill publishes."""
        digest = key_hash(key)
        if digest >= self.threshold:
            if hit:
                with self._lock:
                    self._served += 1
            return
        now = self._clock()
        with self._lock:
            if hit:
                self._served += 1
                self._enqueue((now, key, digest, None, None))
            elif len(self._waiting) < self.whatif.max_pending:
                self._waiting[key] = (now, digest, None)
            else:
                self.dropped += 1

    def filled(self, key: str, duration: float, error: BaseException | None) -> None:
        """A fill of ``key`` ended: its duration is the miss's cost; a failed one is dropped."""
        with self._lock:
            if error is None:
                self._served += 1
            waiting = self._waiting.get(key)
            if waiting is None:
                return
            if error is not None:
                del self._waiting[key]
            else:
                self._waiting[key] = (waiting[0], waiting[1], duration)

    def sized(self, key: str, size: int) -> None:
        """``key`` measures ``size`` bytes: a published fill's miss is queued."""
        with self._lock:
            waiting = self._waiting.pop(key, None)
            if waiting is not None:
                now, digest, fill = waiting
                self._enqueue((now, key, digest, size, fill))

    @property
    def held(self) -> int:
        """Requests held back at the last update, to be replayed in time order with the
        other processes' requests that will come later."""
        return len(self._held)

    def peer_requests(self, requests: Iterable[PeerRequest]) -> None:
        """Requests other processes served: queued, replayed in time order at the update.

        They arrive late (hits when they are written behind): from now on, every request
        waits as long before it is replayed (at most :data:`MAX_LAG` intervals), so that
        those that come later still find their place in time.
        """
        interval = self._interval
        threshold = self.threshold
        oldest = now = self._clock()
        with self._lock:
            for request in requests:
                key, last, hits, since = request.key, request.time, request.hits, request.since
                self._served += hits or 1
                # Only the last hit's time is recorded: the others are spread over the
                # interval before it (the writer's write-behind period), after the
                # model's previous access; without one (the model was removed before
                # they were written), all at the last one's time, never before its fill.
                start = last if since is None else max(last - interval, min(since, last))
                oldest = min(oldest, start)
                digest = key_hash(key)
                if digest >= threshold:
                    continue
                if not hits:
                    self._enqueue((last, key, digest, request.size, request.fill))
                    continue
                step = (last - start) / hits
                for n in range(hits - 1, -1, -1):
                    self._enqueue((last - n * step, key, digest, None, None))
            self._lag = min(now - oldest, MAX_LAG * interval)

    def scanned(self, entries: Sequence[CacheEntry]) -> None:
        """The cache's models as a scan saw them: the sizes of hits on models filled before."""
        self._scanned, self._sizes = entries, None

    def _scanned_size(self, key: str) -> int | None:
        if self._sizes is None:
            self._sizes = {e.key: e.size for e in self._scanned}
        return self._sizes.get(key)

    def update(self) -> None:
        """Replay the queued requests through the miniature caches."""
        now = self._clock()
        with self._lock:
            queue, self._queue = self._queue, []
            served, lag = self._served, self._lag
        queue += self._held
        queue.sort(key=itemgetter(0))  # misses queue when they publish; peers' come late
        cut = bisect.bisect_right(queue, now - lag, key=itemgetter(0)) if lag else len(queue)
        queue, self._held = queue[:cut], queue[cut:]
        self._replay(queue)
        # Those held back are not counted yet either (each stands for 1 / rate requests).
        self.requests = max(0, served - round(len(self._held) / self.rate))

    def _replay(self, queue: list[_Request]) -> None:
        sampled, miniatures = self._sampled, self._miniatures.values()
        weight = 1 / self.rate
        for now, key, digest, published, fill in queue:
            if digest >= self.threshold:
                continue  # the key left the sample since
            known = sampled.get(key)
            size = published
            if size is None:  # a hit: the size the model was published or scanned with
                size = known if known is not None else self._scanned_size(key)
                if size is None:
                    self.dropped += 1  # a model this cache has not measured yet
                    continue
            sampled[key] = size
            if known is None:
                heapq.heappush(self._largest, (-digest, key))
                if len(sampled) > self.whatif.max_keys:
                    self._shrink()
                    weight = 1 / self.rate
                    if digest >= self.threshold:
                        continue
            for miniature in miniatures:
                miniature.request(now, key, size, fill, weight)

    def _shrink(self) -> None:
        """Drop the key of the largest hash from the sample; scale the caches to the rate."""
        negated, key = heapq.heappop(self._largest)
        self.threshold = -negated
        del self._sampled[key]
        rate = self.rate
        for (_, factor), miniature in self._miniatures.items():
            miniature.forget(key)
            miniature.resize(self._scaled(factor, rate))

    def miss_ratios(self) -> Iterable[tuple[str, float, float]]:
        """(policy, size as a multiple of the limit, miss ratio) of each miniature with requests."""
        if not self.requests:
            return
        for (name, factor), miniature in self._miniatures.items():
            yield name, factor, min(1.0, miniature.misses / self.requests)
