"""The shared policy test suite, with hypothesis generating the entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["PolicyContract"]


def _hypothesis() -> Any:
    # hypothesis is imported only when the policy suite runs.
    import hypothesis  # noqa: PLC0415
    from hypothesis import strategies  # noqa: PLC0415

    return hypothesis, strategies


def _entry_strategy(st: Any) -> Any:
    from .._entry import CacheEntry  # noqa: PLC0415

    return st.builds(
        CacheEntry,
        key=st.sampled_from([f"m{n}" for n in range(12)]),
        size=st.integers(min_value=0, max_value=5000),
        access_count=st.integers(min_value=0, max_value=6),
        last_access=st.integers(min_value=0, max_value=50).map(float),
        created=st.integers(min_value=0, max_value=50).map(float),
        fill_seconds=st.none() | st.floats(min_value=0, max_value=100, allow_nan=False),
    )


class PolicyContract:
    """The behaviour every eviction policy must show; built-in policies pass it all.

    Subclass it in a ``Test*`` class and implement :meth:`make_policy`::

        class TestMyPolicy(PolicyContract):
            def make_policy(self):
                return MyPolicy()

    Entries and event sequences are generated with hypothesis (imported only when the
    suite runs). ``order()`` and ``select_evictions()`` are checked when the policy has
    them, the state (``new_state()``) when it has one, and any policy is skipped for
    what it lacks.
    """

    #: Examples hypothesis tries per property.
    max_examples = 60

    def make_policy(self) -> Any:
        """Return a new policy; one whose order reads a clock gets a fixed one."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------

    def _given(self, *strategies: Any) -> Callable[[Callable[..., None]], Callable[[], None]]:
        hypothesis, _ = _hypothesis()
        settings = hypothesis.settings(
            max_examples=self.max_examples,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )

        def wrap(check: Callable[..., None]) -> Callable[[], None]:
            test: Callable[[], None] = settings(hypothesis.given(*strategies)(check))
            return test

        return wrap

    def _entries(self) -> Any:
        _, st = _hypothesis()
        return st.lists(_entry_strategy(st), unique_by=lambda e: e.key, max_size=12)

    def _events(self) -> Any:
        _, st = _hypothesis()
        entry = _entry_strategy(st)
        index = st.integers(min_value=0, max_value=11)
        return st.lists(
            st.one_of(
                st.tuples(st.just("insert"), entry),
                st.tuples(st.just("access"), entry, st.integers(min_value=1, max_value=3)),
                st.tuples(st.just("forget"), index),
                st.tuples(st.just("evict"), st.integers(min_value=0, max_value=3)),
            ),
            max_size=40,
        )

    def _needs(self, method: str) -> Any:
        policy = self.make_policy()
        if not callable(getattr(policy, method, None)):
            import pytest  # noqa: PLC0415

            pytest.skip(f"{type(policy).__name__} has no {method}()")
        return policy

    def _play(
        self, state: Any, events: list[tuple[Any, ...]], tracked: set[str] | None = None
    ) -> set[str]:
        """Apply ``events`` to ``state``, checking each walk; return the keys tracked.

        ``tracked`` is what the state tracks before (nothing for a new state).
        """
        tracked = set() if tracked is None else set(tracked)
        for event in events:
            if event[0] == "insert" and event[1].key not in tracked:
                state.insert(event[1])
                tracked.add(event[1].key)
            elif event[0] == "access" and event[1].key in tracked:
                state.access(event[1], event[2])
            elif event[0] == "forget" and tracked:
                key = sorted(tracked)[event[1] % len(tracked)]
                state.forget(key)
                tracked.discard(key)
            elif event[0] == "evict":
                victims = state.victims()
                for _ in range(event[1]):
                    key = next(victims, None)
                    if key is None:
                        break
                    assert key in tracked, f"{key!r} was never inserted, or was forgotten"
                    state.evicted(key)
                    tracked.discard(key)
                close = getattr(victims, "close", None)
                if close is not None:
                    close()
        return tracked

    # -- order() and select_evictions() --------------------------------------------------

    def test_has_a_name(self) -> None:
        from ..policies.base import EvictionPolicy  # noqa: PLC0415

        policy = self.make_policy()
        assert isinstance(policy, EvictionPolicy)
        assert isinstance(policy.name, str)
        assert policy.name

    def test_order_of_nothing_is_empty(self) -> None:
        assert self._needs("order").order([]) == []

    def test_order_is_a_permutation_of_its_input(self) -> None:
        policy = self._needs("order")

        @self._given(self._entries())
        def check(entries: list[Any]) -> None:
            before = list(entries)
            ordered = policy.order(entries)
            assert entries == before, "order() changed its input"
            assert sorted(e.key for e in ordered) == sorted(e.key for e in entries)
            assert all(any(e is given for given in entries) for e in ordered)

        check()

    def test_order_is_deterministic(self) -> None:
        self._needs("order")

        @self._given(self._entries())
        def check(entries: list[Any]) -> None:
            first = [e.key for e in self.make_policy().order(list(entries))]
            again = self.make_policy()
            assert [e.key for e in again.order(list(entries))] == first
            assert [e.key for e in again.order(list(entries))] == first

        check()

    def test_select_of_nothing_is_empty(self) -> None:
        policy = self._needs("select_evictions")
        assert policy.select_evictions([], 100) == []

    def test_select_stops_as_soon_as_enough_is_freed(self) -> None:
        _, st = _hypothesis()
        policy = self._needs("select_evictions")

        @self._given(self._entries(), st.integers(min_value=-10, max_value=30_000))
        def check(entries: list[Any], required: int) -> None:
            chosen = policy.select_evictions(list(entries), required)
            keys = [e.key for e in chosen]
            assert len(set(keys)) == len(keys), "an entry selected twice"
            assert all(any(e is given for given in entries) for e in chosen)
            freed = sum(e.size for e in chosen)
            if required <= 0:
                assert chosen == []
            elif freed < required:
                assert len(chosen) == len(entries), "stopped before freeing enough"
            else:
                assert freed - chosen[-1].size < required, "selected more than needed"
            if callable(getattr(policy, "order", None)):
                assert keys == [e.key for e in policy.order(list(entries))][: len(keys)]

        check()

    # -- the state -----------------------------------------------------------------------

    def test_state_yields_each_tracked_key_once(self) -> None:
        policy = self._needs("new_state")

        @self._given(self._events())
        def check(events: list[tuple[Any, ...]]) -> None:
            state = policy.new_state()
            tracked = self._play(state, events)
            walked = list(state.victims())
            assert sorted(walked) == sorted(tracked)
            # A walk that evicts nothing changes nothing that counts.
            assert sorted(state.victims()) == sorted(tracked)

        check()

    def test_state_keeps_what_a_closed_walk_did_not_evict(self) -> None:
        policy = self._needs("new_state")

        @self._given(self._events())
        def check(events: list[tuple[Any, ...]]) -> None:
            state = policy.new_state()
            tracked = self._play(state, events)
            victims = state.victims()
            first = next(victims, None)
            close = getattr(victims, "close", None)
            if close is not None:
                close()
            assert (first is None) == (not tracked)
            assert sorted(state.victims()) == sorted(tracked)

        check()

    def test_state_is_deterministic(self) -> None:
        self._needs("new_state")

        @self._given(self._events())
        def check(events: list[tuple[Any, ...]]) -> None:
            one = self.make_policy().new_state()
            two = self.make_policy().new_state()
            self._play(one, events)
            self._play(two, events)
            assert one.dump() == two.dump()
            assert list(one.victims()) == list(two.victims())

        check()

    def test_state_survives_a_round_trip(self) -> None:
        policy = self._needs("new_state")

        @self._given(self._events(), self._events())
        def check(events: list[tuple[Any, ...]], later: list[tuple[Any, ...]]) -> None:
            state = policy.new_state()
            tracked = self._play(state, events)
            data = state.dump()
            assert isinstance(data, bytes)
            restored = policy.new_state(data)
            assert restored.dump() == data
            # The two make the same decisions from here on.
            assert self._play(state, later, tracked) == self._play(restored, later, tracked)
            assert state.dump() == restored.dump()
            assert list(state.victims()) == list(restored.victims())

        check()

    def test_state_refuses_what_is_not_its_own(self) -> None:
        import pytest  # noqa: PLC0415

        from .._entry import CacheEntry  # noqa: PLC0415
        from ..policies import GdsfPolicy, LruPolicy  # noqa: PLC0415

        policy = self._needs("new_state")
        other = LruPolicy() if type(policy) is not LruPolicy else GdsfPolicy()
        state = other.new_state()
        state.insert(CacheEntry("m", 1, 1, 0.0, 0.0))
        for data in (b"", b"not json", b"[]", b'{"policy": 1}', state.dump()):
            with pytest.raises(ValueError):  # noqa: PT011 - any ValueError subclass will do
                policy.new_state(data)
