"""Run a coroutine's first step at once; only when it suspends does it get a task.

Most SRPC work (a handler that never awaits, a byte-stream frame for a reader with room)
finishes in its first step: a task per call would cost a call_soon and an event-loop
turn for nothing. :func:`start_eagerly` runs that first step in a copy of the current
context, as a new task would, and hands a coroutine that suspended to a task that
resumes it where it stopped, in the same context.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Started", "start_eagerly"]

T = TypeVar("T")


class Started(Generic[T]):
    """What :func:`start_eagerly` gives back: a result now, or the task that goes on."""

    __slots__ = ("result", "task")

    def __init__(self, result: T | None, task: asyncio.Task[T] | None) -> None:
        self.result = result
        self.task = task


class _Resumed(Coroutine[Any, Any, T]):
    """A coroutine that already yielded ``pending``: the task's first step yields it again."""

    __slots__ = ("_coro", "_pending", "_started")

    def __init__(self, coro: Coroutine[Any, Any, T], pending: Any) -> None:
        self._coro = coro
        self._pending = pending
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            pending, self._pending = self._pending, None
            return pending
        return self._coro.send(value)

    def __next__(self) -> Any:
        return self.send(None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # A cancellation before the first resumption reaches the coroutine where it waits.
        self._started = True
        self._pending = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self

    def __iter__(self) -> Generator[Any, None, T]:
        return self


def start_eagerly(
    coro: Coroutine[Any, Any, T],
    loop: asyncio.AbstractEventLoop,
    *,
    name: str | None = None,
) -> Started[T]:
    """Run ``coro`` up to its first suspension; the result, or the task that continues it.

    An exception raised in the first step propagates from here, as from ``await coro``.
    """
    context = contextvars.copy_context()
    try:
        pending = context.run(coro.send, None)
    except StopIteration as stop:
        return Started(stop.value, None)
    task = loop.create_task(_Resumed(coro, pending), name=name, context=context)
    return Started(None, task)
