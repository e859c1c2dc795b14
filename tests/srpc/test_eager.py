"""start_task: from a callback (no task running) a task's first step runs at once."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from meshsrpc.srpc.eager import start_task

T = TypeVar("T")
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="outer")


async def from_callback(make: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
    """start_task called from a plain event-loop callback, as a transport's data callback."""
    loop = asyncio.get_running_loop()
    made: asyncio.Future[asyncio.Task[T]] = loop.create_future()
    loop.call_soon(lambda: made.set_result(start_task(loop, make(), name="eager-test")))
    return await made


async def test_a_coroutine_that_never_waits_is_done_when_start_task_returns() -> None:
    async def no_wait() -> str:
        return "done"

    task = await from_callback(no_wait)
    assert task.get_name() == "eager-test"
    assert task.done()
    assert await task == "done"


async def test_the_first_step_runs_inside_its_own_task() -> None:
    seen: list[asyncio.Task[Any] | None] = []

    async def who() -> None:
        seen.append(asyncio.current_task())

    task = await from_callback(who)
    await task
    assert seen == [task]


async def test_asyncio_timeout_works_in_the_first_step() -> None:
    async def bounded() -> str:
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        return "in time"

    assert await (await from_callback(bounded)) == "in time"


async def test_a_timeout_set_in_the_first_step_cancels_the_same_task() -> None:
    async def too_slow() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()

    task = await from_callback(too_slow)
    with pytest.raises(TimeoutError):
        await task


async def test_an_exception_in_the_first_step_fails_the_task() -> None:
    async def boom() -> None:
        raise ValueError("boom")

    task = await from_callback(boom)
    with pytest.raises(ValueError, match="boom"):
        await task


async def test_a_coroutine_that_waits_goes_on_in_its_task() -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def waits() -> int:
        steps.append("first")
        await gate.wait()
        steps.append("second")
        return 7

    task = await from_callback(waits)
    assert steps == ["first"]
    assert not task.done()
    gate.set()
    assert await task == 7
    assert steps == ["first", "second"]


async def test_cancelling_a_waiting_task_reaches_the_coroutine() -> None:
    seen: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = await from_callback(waits_forever)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_context_changes_stay_in_the_task() -> None:
    seen: list[str] = []

    async def sets() -> None:
        VAR.set("inner")
        await asyncio.sleep(0)
        seen.append(VAR.get())

    task = await from_callback(sets)
    assert VAR.get() == "outer"
    await task
    assert seen == ["inner"] and VAR.get() == "outer"


async def test_from_a_running_task_the_task_starts_as_usual() -> None:
    steps: list[str] = []

    async def record() -> None:
        steps.append("ran")

    task = start_task(asyncio.get_running_loop(), record())
    assert steps == [] and not task.done()
    await task
    assert steps == ["ran"]


async def test_the_loop_keeps_its_own_call_soon() -> None:
    loop = asyncio.get_running_loop()

    async def nothing() -> None:
        pass

    await (await from_callback(nothing))
    assert "call_soon" not in getattr(loop, "__dict__", {})
