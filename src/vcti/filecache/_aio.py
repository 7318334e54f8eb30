"""``async with cache.amodel(key)``: the model context for asyncio servers.

Everything that can block (waiting for another thread's or process's fill, pinning,
publishing, discarding) runs in a worker thread, never on the event loop. A task
cancelled while it waits or fills releases what it held before the cancellation goes
on: a fill is discarded, a pin released, the fill lock freed.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._cache import ModelDir

T = TypeVar("T")


class AsyncModelDir:
    """The asyncio form of :class:`~vcti.filecache.ModelDir` (``FileCache.amodel()``)."""

    __slots__ = ("_entered", "_model")

    def __init__(self, model: ModelDir) -> None:
        self._model = model
        self._entered = False

    def __repr__(self) -> str:
        return f"AsyncModelDir({self._model!r})"

    async def __aenter__(self) -> ModelDir:
        loop = asyncio.get_running_loop()
        enter = loop.run_in_executor(None, _in_context(self._model.__enter__))
        try:
            model = await asyncio.shield(enter)
        except asyncio.CancelledError:
            # The worker may still get the model: once it does, give it back, then let
            # the cancellation go on.
            await _undo(loop, enter, self._model)
            raise
        self._entered = True
        return model

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._entered:
            return
        self._entered = False
        loop = asyncio.get_running_loop()
        leave = loop.run_in_executor(
            None, _in_context(functools.partial(self._model.__exit__, exc_type, exc, tb))
        )
        try:
            await asyncio.shield(leave)
        except asyncio.CancelledError:
            await _finish(leave)  # publish or discard completes before the task ends
            raise


def _in_context(function: Callable[[], T]) -> Callable[[], T]:
    """Run ``function`` in the caller's context (its current span, its contextvars)."""
    context = contextvars.copy_context()
    return functools.partial(context.run, function)


async def _undo(
    loop: asyncio.AbstractEventLoop, enter: asyncio.Future[ModelDir], model: ModelDir
) -> None:
    """Wait for an abandoned ``__enter__`` and release what it got."""

    async def undo() -> None:
        try:
            await enter
        except BaseException:
            return
        error = asyncio.CancelledError()
        await loop.run_in_executor(
            None, _in_context(functools.partial(model.__exit__, type(error), error, None))
        )

    await _finish(asyncio.ensure_future(undo()))


async def _finish(work: asyncio.Future[None]) -> None:
    """Wait for ``work`` even if this task is cancelled again meanwhile."""
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            continue
    if not work.cancelled():
        work.exception()  # retrieved: errors of the release are the release's to report
