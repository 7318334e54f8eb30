"""CacheManagerConfig validation."""

from __future__ import annotations

import pytest

from vcti.filecache import CacheManagerConfig, LfuPolicy, LoggingObserver, LruPolicy
from vcti.filecache.testing import RecordingObserver


def test_defaults() -> None:
    config = CacheManagerConfig(evict_above=100)
    assert isinstance(config.policy, LruPolicy)
    assert config.interval == 60.0
    assert config.observers == ()
    assert config.target == 100


def test_observer_forms() -> None:
    one = RecordingObserver()
    assert CacheManagerConfig(evict_above=1, observer=one).observers == (one,)
    two = [RecordingObserver(), LoggingObserver()]
    assert CacheManagerConfig(evict_above=1, observer=two).observers == tuple(two)


def test_evict_to_sets_the_target() -> None:
    assert CacheManagerConfig(evict_above=100, evict_to=80).target == 80


def test_frozen() -> None:
    config = CacheManagerConfig(evict_above=100)
    with pytest.raises(AttributeError):
        config.evict_above = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"evict_above": -1}, ValueError, "evict_above must be positive"),
        ({"evict_above": 1.5}, TypeError, "evict_above must be an int"),
        ({"evict_above": True}, TypeError, "evict_above must be an int"),
        ({"evict_above": "50G"}, TypeError, "evict_above must be an int"),
        ({"evict_above": 10, "evict_to": 11}, ValueError, "evict_to"),
        ({"evict_above": 10, "evict_to": -1}, ValueError, "evict_to must not be negative"),
        ({"evict_above": 10, "interval": 0}, ValueError, "interval must be a positive"),
        ({"evict_above": 10, "interval": -5}, ValueError, "interval must be a positive"),
        ({"evict_above": 10, "interval": float("inf")}, ValueError, "interval"),
        ({"evict_above": 10, "interval": float("nan")}, ValueError, "interval"),
        ({"evict_above": 10, "interval": "60"}, TypeError, "interval must be a number"),
        ({"evict_above": 10, "lock_timeout": 0}, ValueError, "lock_timeout"),
        ({"evict_above": 10, "policy": "lru"}, TypeError, "policy must be an EvictionPolicy"),
        ({"evict_above": 10, "policy": LfuPolicy}, TypeError, "policy must be an EvictionPolicy"),
        ({"evict_above": 10, "observer": "log"}, TypeError, "observer must be"),
        ({"evict_above": 10, "observer": [object()]}, TypeError, "every observer"),
        ({"evict_above": 10, "observer": 3}, TypeError, "observer must be"),
        ({"evict_above": 10, "clock": 3}, TypeError, "clock must be callable"),
    ],
)
def test_invalid(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        CacheManagerConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_full_scan_every(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="full_scan_every"):
        CacheManagerConfig(evict_above=1, full_scan_every=value)  # type: ignore[arg-type]
