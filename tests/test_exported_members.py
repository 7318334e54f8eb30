"""The public names are exactly those in __all__, sorted, each documented."""

from __future__ import annotations

import importlib

import pytest

import vcti.filecache

MODULES = [
    "vcti.filecache",
    "vcti.filecache.exceptions",
    "vcti.filecache.policies",
    "vcti.filecache.storage",
    "vcti.filecache.observers",
    "vcti.filecache.replay",
    # 1.0's module paths, kept as re-exports
    "vcti.filecache.cache",
    "vcti.filecache.manager",
    "vcti.filecache.meta",
    "vcti.filecache.model",
    "vcti.filecache.observer",
    "vcti.filecache.policy",
    "vcti.filecache.policy.base",
    "vcti.filecache.policy.lfu",
    "vcti.filecache.policy.lru",
    "vcti.filecache.policy.sized_lru",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for symbol in exported:
        assert getattr(module, symbol) is not None
    public = {
        symbol
        for symbol, value in vars(module).items()
        if not symbol.startswith("_")
        and not isinstance(value, type(vcti))
        and getattr(value, "__module__", "").startswith("vcti.filecache")
    }
    assert public <= set(exported), f"public but not exported: {public - set(exported)}"


def test_testing_all_is_sorted() -> None:
    from vcti.filecache import testing

    assert testing.__all__ == sorted(testing.__all__)
    for symbol in testing.__all__:
        assert getattr(testing, symbol).__doc__, symbol


def test_every_public_name_has_a_docstring() -> None:
    for symbol in vcti.filecache.__all__:
        if symbol == "__version__":
            continue
        assert getattr(vcti.filecache, symbol).__doc__, symbol
