"""``async with cache.amodel(key)``: the model context for asyncio servers.

Nothing blocks the event loop. While another task or thread of this process fills (or
removes) the key, the task waits on the loop itself, holding no thread; pinning, waiting
for another process's fill, publishing and discarding run in the loop's default executor.
A task cancelled while it waits or fills releases what it held before its cancellation
goes on: a fill is discarded, a pin released, the fill lock freed, and the other waiters
go on. Observer hooks run in the executor, in one copy of the task's context taken when
the context is entered, so a ``filecache.model`` span is a child of the request's span.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ._coord import Busy, Cancelled
from .exceptions import LockTimeoutError

if TYPE_CHECKING:
    from ._cache import ModelDir

T = TypeVar("T")


class AsyncModelDir:
    """The asyncio form of :class:`~vcti.filecache.ModelDir` (``FileCache.amodel()``).

    ``async with`` it to get the :class:`~vcti.filecache.ModelDir`, entered.
    """

    __slots__ = ("_context", "_entered", "_model")

    def __init__(self, model: ModelDir) -> None:
        self._model = model
        self._entered = False
        self._context: contextvars.Context | None = None

    def __repr__(self) -> str:
        return f"AsyncModelDir({self._model!r})"

    def __enter__(self) -> None:
        raise TypeError(
            "amodel() is for 'async with' in a coroutine; use model() in synchronous code"
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: entering raises."""

    def _run(self, loop: asyncio.AbstractEventLoop, function: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``function`` in the executor, in this context's copy of the task's context."""
        assert self._context is not None
        return loop.run_in_executor(None, functools.partial(self._context.run, function))

    async def __aenter__(self) -> ModelDir:
        loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        model = self._model
        key = model.key
        coord = model._runtime.coord
        deadline = time.monotonic() + model._timeout
        cancel = threading.Event()
        enter: asyncio.Future[ModelDir] | None = None
        while True:
            idle = loop.create_future()

            def wake(idle: asyncio.Future[None] = idle) -> None:
                loop.call_soon_threadsafe(_resolve, idle)

            try:
                if coord.when_idle(key, wake):  # another task or thread fills it here
                    remaining = deadline - time.monotonic()
                    try:
                        await asyncio.wait_for(idle, max(0.0, remaining))
                    except asyncio.TimeoutError:
                        error = LockTimeoutError(f"another fill of {key!r} took too long")
                        await self._run(loop, functools.partial(model._abandon, error))
                        raise error from None
                enter = self._run(loop, functools.partial(model._enter, wait=False, cancel=cancel))
                try:
                    await asyncio.shield(enter)
                except Busy:
                    continue  # busy again before the worker got to it: wait once more
            except asyncio.CancelledError as cancelled:
                cancel.set()  # a wait for another process's fill ends within a slice
                await _finish(self._undo(loop, enter, cancelled))
                raise
            self._entered = True
            return model

    async def _undo(
        self,
        loop: asyncio.AbstractEventLoop,
        enter: asyncio.Future[ModelDir] | None,
        cancelled: asyncio.CancelledError,
    ) -> None:
        """Release what an abandoned ``__enter__`` got, once it is done."""
        model = self._model
        if enter is not None:
            try:
                await enter
            except (Busy, Cancelled):
                pass
            except BaseException:
                return
            else:
                exit_ = functools.partial(model.__exit__, asyncio.CancelledError, cancelled, None)
                await self._run(loop, exit_)
                return
        await self._run(loop, functools.partial(model._abandon, cancelled))

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
        leave = self._run(loop, functools.partial(self._model.__exit__, exc_type, exc, tb))
        try:
            await asyncio.shield(leave)
        except asyncio.CancelledError:
            await _finish(leave)  # publish or discard completes before the task ends
            raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _finish(work: Awaitable[T]) -> None:
    """Wait for ``work`` (a future or coroutine) even if this task is cancelled again."""
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
        except BaseException:
            return
    if not task.cancelled():
        task.exception()  # retrieved
