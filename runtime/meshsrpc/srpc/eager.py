"""Tasks whose first step runs at once: Python 3.12's ``eager_start``, also on 3.11.

Most SRPC work (a handler that never awaits, a byte-stream frame for a reader with room)
finishes in its first step; a task scheduled the usual way costs a ``call_soon`` and
an event-loop turn for nothing. :func:`start_task` creates a real :class:`asyncio.Task`
(so ``asyncio.current_task()``, ``asyncio.timeout()``, cancellation and exceptions behave
exactly as in any task) and runs its first step before returning, when no other task
is running. On 3.12+ that is ``asyncio.Task(..., eager_start=True)``. On 3.11 the task's
own first step is taken from the ``loop.call_soon`` it schedules while being created
and run right away (asyncio's loop and uvloop's both allow that); a loop whose
``call_soon`` cannot be replaced, a task factory, or a running task (only one task
can be current) fall back to an ordinary task.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, TypeVar

__all__ = ["start_task"]

T = TypeVar("T")

# Loop classes whose call_soon cannot be replaced on the instance.
_SEALED: set[type[asyncio.AbstractEventLoop]] = set()


def start_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    *,
    name: str | None = None,
) -> asyncio.Task[T]:
    """A task running ``coro``, its first step already run when possible (the task may
    then be done)."""
    if loop.get_task_factory() is not None or asyncio.current_task(loop) is not None:
        return loop.create_task(coro, name=name)
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)
    return _eager_311(loop, coro, name)


def _eager_311(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], name: str | None
) -> asyncio.Task[T]:
    if type(loop) in _SEALED:
        return loop.create_task(coro, name=name)
    steps: list[tuple[Callable[..., object], tuple[Any, ...], Context | None]] = []

    def take_step(
        callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> None:
        steps.append((callback, args, context))

    try:
        loop.call_soon = take_step  # type: ignore[method-assign,assignment]
    except AttributeError:
        _SEALED.add(type(loop))
        return loop.create_task(coro, name=name)
    try:
        task: asyncio.Task[T] = asyncio.Task(coro, loop=loop, name=name)
    finally:
        del loop.call_soon
    # Exactly one call_soon: the task's first step, in the task's own context.
    ((callback, args, context),) = steps
    if context is None:
        callback(*args)
    else:
        context.run(callback, *args)
    return task
