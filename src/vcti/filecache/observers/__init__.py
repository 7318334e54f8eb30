"""Observers: receive cache events and export them."""

from __future__ import annotations

from .base import CacheObserver, LoggingObserver

__all__ = ["CacheObserver", "LoggingObserver"]
