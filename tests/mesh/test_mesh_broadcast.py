"""MeshService.broadcast: every node, sender id, skip_self, routing by type (WIRE.md §1)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mesh_helpers import MakeMesh, eventually


def recorder(into: list[tuple[str, Any, int]], name: str) -> Any:
    return lambda data, sender: into.append((name, data, sender))


async def test_broadcast_reaches_every_node_with_the_sender_id(make_mesh: MakeMesh) -> None:
    nodes = [await make_mesh() for _ in range(3)]
    seen: list[tuple[str, Any, int]] = []
    for node in nodes:
        node.register_broadcast_handler("hello", recorder(seen, f"n{node.instance_id}"))
    await nodes[1].broadcast("hello", {"msg": "hi", "n": 1})
    await eventually(lambda: len(seen) == 3)
    await asyncio.sleep(0.1)  # and nothing more arrives (the sender's own copy is ignored)
    assert sorted(seen) == [(f"n{i}", {"msg": "hi", "n": 1}, 2) for i in (1, 2, 3)]


async def test_sender_runs_its_own_handler_directly(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    seen: list[tuple[str, Any, int]] = []
    a.register_broadcast_handler("hello", recorder(seen, "a"))
    await a.broadcast("hello", 1)
    assert seen == [("a", 1, 1)]  # already delivered when broadcast() returns
    await asyncio.sleep(0.2)
    assert seen == [("a", 1, 1)]


async def test_broadcast_skip_self(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    seen: list[tuple[str, Any, int]] = []
    a.register_broadcast_handler("hello", recorder(seen, "a"))
    b.register_broadcast_handler("hello", recorder(seen, "b"))
    await a.broadcast("hello", 1, skip_self=True)
    await eventually(lambda: seen)
    await asyncio.sleep(0.2)
    assert seen == [("b", 1, 1)]


async def test_several_broadcast_types_are_routed_to_their_handlers(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    seen: list[tuple[str, Any, int]] = []
    b.register_broadcast_handler("one", recorder(seen, "one"))
    b.register_broadcast_handler("two", recorder(seen, "two"))
    await a.broadcast("one", 1)
    await a.broadcast("two", 2)
    await a.broadcast("one", 3)
    await eventually(lambda: len(seen) == 3)
    assert sorted(seen) == [("one", 1, 1), ("one", 3, 1), ("two", 2, 1)]


async def test_async_broadcast_handler(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    got = asyncio.get_running_loop().create_future()

    async def handler(data: Any, sender: int) -> None:
        await asyncio.sleep(0)
        got.set_result((data, sender))

    b.register_broadcast_handler("hello", handler)
    await a.broadcast("hello", "x")
    assert await asyncio.wait_for(got, 5) == ("x", 1)


async def test_broadcast_without_handler_is_ignored(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    seen: list[tuple[str, Any, int]] = []
    b.register_broadcast_handler("known", recorder(seen, "known"))
    await a.broadcast("unknown", 1)
    await a.broadcast("known", 2)
    await eventually(lambda: seen)
    assert seen == [("known", 2, 1)]


async def test_raising_broadcast_handler_is_logged(
    make_mesh: MakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_mesh()
    b = await make_mesh()
    seen: list[tuple[str, Any, int]] = []

    def fail(data: Any, sender: int) -> None:
        raise RuntimeError("handler boom")

    a.register_broadcast_handler("boom", fail)
    b.register_broadcast_handler("boom", fail)
    b.register_broadcast_handler("after", recorder(seen, "after"))
    with caplog.at_level(logging.ERROR, logger="meshsrpc.mesh"):
        await a.broadcast("boom", 1)  # the local handler's error does not reach the sender
        await a.broadcast("after", 2)
        await eventually(lambda: seen)
    failures = [r for r in caplog.records if "broadcast handler for 'boom' failed" in r.message]
    assert len(failures) == 2  # the sender's own handler and the receiver's


async def test_broadcast_after_stop_is_ignored(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    seen: list[tuple[str, Any, int]] = []
    b.register_broadcast_handler("hello", recorder(seen, "b"))
    await b.stop()
    await a.broadcast("hello", 1)
    await asyncio.sleep(0.3)
    assert seen == []
