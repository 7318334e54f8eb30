"""The observer base class and the logging observer, under 1.0's module name.

Kept for code written against 1.0: ``vcti.filecache.observer`` names the same classes
as :mod:`vcti.filecache.observers`, where the exporters live too.
"""

from __future__ import annotations

from .observers.base import CacheObserver, LoggingObserver

__all__ = ["CacheObserver", "LoggingObserver"]
