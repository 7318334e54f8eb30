"""Every built-in policy passes the shared policy contract."""

from __future__ import annotations

from vcti.filecache import (
    CostAwarePolicy,
    GdsfPolicy,
    IdleSizePolicy,
    LargestFirstPolicy,
    LfuPolicy,
    LruPolicy,
    SievePolicy,
    SizedLruPolicy,
)
from vcti.filecache.testing import PolicyContract


class TestLru(PolicyContract):
    def make_policy(self) -> LruPolicy:
        return LruPolicy()


class TestLfu(PolicyContract):
    def make_policy(self) -> LfuPolicy:
        return LfuPolicy()


class TestSizedLru(PolicyContract):
    def make_policy(self) -> SizedLruPolicy:
        return SizedLruPolicy()


class TestIdleSize(PolicyContract):
    def make_policy(self) -> IdleSizePolicy:
        return IdleSizePolicy(clock=lambda: 100.0)


class TestGdsf(PolicyContract):
    def make_policy(self) -> GdsfPolicy:
        return GdsfPolicy()


class TestCostAware(PolicyContract):
    def make_policy(self) -> CostAwarePolicy:
        return CostAwarePolicy()


class TestSieve(PolicyContract):
    def make_policy(self) -> SievePolicy:
        return SievePolicy()


class TestLargestFirst(PolicyContract):
    def make_policy(self) -> LargestFirstPolicy:
        return LargestFirstPolicy()
