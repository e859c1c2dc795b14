"""Deadlines: many deadlines on one event-loop timer (_deadlines.py)."""

from __future__ import annotations

import asyncio

from meshsrpc._deadlines import Deadlines


async def test_due_keys_are_reported_once_in_deadline_order() -> None:
    loop = asyncio.get_running_loop()
    due: list[str] = []
    deadlines: Deadlines[str] = Deadlines(due.append)
    now = loop.time()
    deadlines.set("late", now + 0.06)
    deadlines.set("early", now + 0.02)
    await asyncio.sleep(0.15)
    assert due == ["early", "late"]
    assert len(deadlines) == 0


async def test_dropped_key_is_never_reported() -> None:
    loop = asyncio.get_running_loop()
    due: list[str] = []
    deadlines: Deadlines[str] = Deadlines(due.append)
    deadlines.set("dropped", loop.time() + 0.02)
    deadlines.set("kept", loop.time() + 0.03)
    deadlines.discard("dropped")
    await asyncio.sleep(0.1)
    assert due == ["kept"]


async def test_key_set_again_is_reported_at_its_new_deadline_only() -> None:
    loop = asyncio.get_running_loop()
    due: list[str] = []
    deadlines: Deadlines[str] = Deadlines(due.append)
    deadlines.set("moved", loop.time() + 0.02)
    deadlines.set("moved", loop.time() + 10)
    await asyncio.sleep(0.08)
    assert due == []
    deadlines.set("moved", loop.time() + 0.01)
    await asyncio.sleep(0.08)
    assert due == ["moved"]


async def test_on_due_may_set_the_key_again() -> None:
    loop = asyncio.get_running_loop()
    due: list[int] = []
    deadlines: Deadlines[int] = Deadlines(lambda key: None)

    def repeat(key: int) -> None:
        due.append(key)
        if len(due) < 3:
            deadlines.set(key, loop.time() + 0.01)

    deadlines = Deadlines(repeat)
    deadlines.set(7, loop.time() + 0.01)
    await asyncio.sleep(0.2)
    assert due == [7, 7, 7]


async def test_clear_drops_every_deadline() -> None:
    loop = asyncio.get_running_loop()
    due: list[str] = []
    deadlines: Deadlines[str] = Deadlines(due.append)
    deadlines.set("a", loop.time() + 0.01)
    deadlines.clear()
    await asyncio.sleep(0.05)
    assert due == []
