"""start_eagerly: a coroutine's first step runs at once; a task takes over only if it waits."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from meshsrpc.srpc.eager import start_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="outer")


async def no_wait(steps: list[str]) -> str:
    steps.append("ran")
    return "done"


async def test_a_coroutine_that_never_waits_gives_its_result_without_a_task() -> None:
    steps: list[str] = []
    started = start_eagerly(no_wait(steps), asyncio.get_running_loop())
    assert steps == ["ran"]
    assert started.result == "done" and started.task is None


async def test_an_exception_in_the_first_step_propagates_at_once() -> None:
    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        start_eagerly(boom(), asyncio.get_running_loop())


async def test_a_coroutine_that_waits_goes_on_in_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> str:
        steps.append("first")
        value = await gate
        steps.append(value)
        return value + "!"

    started = start_eagerly(waits(), asyncio.get_running_loop(), name="eager-test")
    assert steps == ["first"] and started.task is not None
    assert started.task.get_name() == "eager-test"
    gate.set_result("second")
    assert await started.task == "second!"
    assert steps == ["first", "second"]


async def test_a_coroutine_that_yields_to_the_loop_goes_on_in_a_task() -> None:
    async def sleeps() -> int:
        await asyncio.sleep(0)
        return 7

    started = start_eagerly(sleeps(), asyncio.get_running_loop())
    assert started.task is not None
    assert await started.task == 7


async def test_an_exception_after_the_wait_fails_the_task() -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    started = start_eagerly(fails_later(), asyncio.get_running_loop())
    assert started.task is not None
    with pytest.raises(KeyError):
        await started.task


async def test_cancelling_the_task_reaches_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    started = start_eagerly(waits_forever(), asyncio.get_running_loop())
    assert started.task is not None
    started.task.cancel()  # before the task ever ran
    with pytest.raises(asyncio.CancelledError):
        await started.task
    assert seen == ["cancelled"]


async def test_context_changes_stay_with_the_coroutine() -> None:
    seen: list[str] = []

    async def sets() -> None:
        VAR.set("inner")
        await asyncio.sleep(0)
        seen.append(VAR.get())

    started = start_eagerly(sets(), asyncio.get_running_loop())
    assert VAR.get() == "outer"
    assert started.task is not None
    await started.task
    assert seen == ["inner"] and VAR.get() == "outer"
