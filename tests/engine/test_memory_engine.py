"""memory:// specifics: named hubs, attachments, asynchronous delivery."""

from __future__ import annotations

import asyncio
import uuid

from meshsrpc.engine import memory_hub, open_mesh_engine
from meshsrpc.engine.base import MeshKeys
from meshsrpc.engine.memory import MemoryMeshEngine
from meshsrpc.settings import RedisSettings


def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def test_hub_is_shared_by_name() -> None:
    name = unique_name()
    assert memory_hub(name) is memory_hub(name)
    assert memory_hub(name) is not memory_hub(unique_name())


def test_attachment_is_created_once_per_hub() -> None:
    hub = memory_hub(unique_name())
    first = hub.attachment("registry", dict)
    first["x"] = 1
    assert hub.attachment("registry", dict) is first
    assert memory_hub(unique_name()).attachment("registry", dict) == {}


async def test_engines_of_one_name_share_a_mesh() -> None:
    name = unique_name()
    settings = RedisSettings(url=f"memory://{name}", prefix="p")
    one, two = open_mesh_engine(settings, "k"), open_mesh_engine(settings, "k")
    assert isinstance(one, MemoryMeshEngine)
    assert await one.allocate_instance_id() == 1
    assert await two.allocate_instance_id() == 2
    other_prefix = open_mesh_engine(RedisSettings(url=f"memory://{name}", prefix="q"), "k")
    assert await other_prefix.allocate_instance_id() == 1


async def test_delivery_is_asynchronous_never_inside_publish() -> None:
    engine = MemoryMeshEngine(memory_hub(unique_name()), MeshKeys("p", "k"))
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), lambda event: None)
    await engine.publish_to_node(1, b"one")
    await engine.publish_broadcast(b"two")
    assert got == []  # scheduled on the loop, not run re-entrantly
    await asyncio.sleep(0)
    assert got == [b"one", b"two"]


async def test_messages_scheduled_before_unsubscribe_are_dropped() -> None:
    engine = MemoryMeshEngine(memory_hub(unique_name()), MeshKeys("p", "k"))
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), lambda event: None)
    await engine.publish_to_node(1, b"in flight")
    await engine.unsubscribe()
    await asyncio.sleep(0.05)
    assert got == []
