"""MeshClientMemoryRegistry: a store of its own by default, shared by name for memory:// meshes."""

from __future__ import annotations

from typing import Any

from meshsrpc import MeshClientMemoryRegistry


async def test_default_instances_are_separate_stores() -> None:
    one, two = MeshClientMemoryRegistry[Any](), MeshClientMemoryRegistry[Any]()
    await one.register("c1", 1, None)
    assert await two.get_client("c1") is None


async def test_shared_returns_one_store_per_name() -> None:
    a = MeshClientMemoryRegistry.shared("mesh-x")
    b = MeshClientMemoryRegistry.shared("mesh-x")
    other = MeshClientMemoryRegistry.shared("mesh-y")
    assert a is b
    assert other is not a
    await a.register("c1", 1, {"v": 1})
    client = await b.get_client("c1")
    assert client is not None and client.metadata == {"v": 1}
    assert await other.get_client("c1") is None
