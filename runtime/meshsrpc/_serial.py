"""Per-key FIFO queues of async steps: one step at a time per key, keys in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["KeyedSerialQueue"]

T = TypeVar("T")


class KeyedSerialQueue:
    """Runs the steps queued under one key one after another, in the order queued.

    Steps under different keys run concurrently. A step that fails or is cancelled
    does not stop the ones queued after it. :meth:`submit` returns the step's task;
    a caller that may be cancelled should await ``asyncio.shield(task)`` so the
    step still runs to the end (later steps rely on it having happened).
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def submit(self, key: str, step: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Queue ``step()`` behind every step already queued under ``key``."""
        previous = self._tails.get(key)
        task = asyncio.get_running_loop().create_task(_after(previous, step))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]
        if not task.cancelled():
            # Mark the error as retrieved: whoever cares awaited the task already.
            task.exception()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` seconds) until every step queued so far has finished."""
        pending = set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout)


async def _after(previous: asyncio.Task[Any] | None, step: Callable[[], Awaitable[T]]) -> T:
    if previous is not None and not previous.done():
        # wait() neither raises the previous step's error nor cancels it.
        await asyncio.wait([previous])
    return await step()
