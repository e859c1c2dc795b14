"""Small asyncio helpers: background work that must always be stoppable, and callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

__all__ = ["call_sync_or_async", "cancel_and_wait", "raise_if_cancelling", "spawn"]

logger = logging.getLogger("meshsrpc")


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into an ordinary exception.

    Call it in ``except Exception`` blocks of background loops: some drivers convert
    the CancelledError thrown into a pending I/O call into their own error, and a
    loop that swallows it would never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    timeout: float = 5.0,
) -> None:
    """Cancel ``tasks`` and wait until they are done, cancelling again if one ignores it."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, max(deadline - loop.time(), 0)))
        if pending and loop.time() >= deadline:
            logger.warning("tasks did not stop within %.1f s: %s", timeout, pending)
            return


def spawn(coro: Coroutine[Any, Any, Any], tasks: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
    """Run ``coro`` in a task that stays in ``tasks`` until done, so a stop can cancel it."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def call_sync_or_async(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, awaited when it returns an awaitable: callbacks may be either."""
    result = fn(*args)
    # A coroutine (an async def) first: inspect.isawaitable costs more.
    if type(result) is types.CoroutineType or inspect.isawaitable(result):
        result = await result
    return result
