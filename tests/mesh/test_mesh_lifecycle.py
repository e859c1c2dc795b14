"""MeshService lifecycle: ids, start/stop, membership (API.md MeshService, WIRE.md §1)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest
from mesh_helpers import FAST, MakeMesh, eventually
from meshsrpc import MeshConnectionError, MeshError, MeshNode, MeshNotRunningError, MeshService
from meshsrpc.engine import open_mesh_engine
from meshsrpc.redis_server import free_port
from meshsrpc.settings import RedisLike, resolve_redis_settings


async def test_instance_ids_are_unique_and_count_from_one(make_mesh: MakeMesh) -> None:
    nodes = [await make_mesh() for _ in range(3)]
    assert [node.instance_id for node in nodes] == [1, 2, 3]


async def test_instance_id_is_zero_before_start_and_after_stop(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh(start=False)
    assert mesh.instance_id == 0
    await mesh.start()
    assert mesh.instance_id == 1
    assert mesh.is_running
    await mesh.stop()
    assert mesh.instance_id == 0
    assert not mesh.is_running


async def test_stopped_node_can_start_again_with_a_new_id(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh()
    await mesh.stop()
    await mesh.start()
    assert mesh.instance_id == 2


async def test_start_twice_raises(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh()
    with pytest.raises(MeshError, match="already running"):
        await mesh.start()
    assert mesh.instance_id == 1


async def test_stop_before_start_is_fine(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh(start=False)
    await mesh.stop()
    assert mesh.instance_id == 0


async def test_stop_twice_is_fine(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh()
    await mesh.stop()
    await mesh.stop()
    assert mesh.instance_id == 0


async def test_invoke_when_not_running_raises(make_mesh: MakeMesh) -> None:
    mesh = await make_mesh(start=False)
    mesh.register_handler("echo", lambda data: data)
    with pytest.raises(MeshNotRunningError):
        await mesh.invoke(1, "echo", 1)
    await mesh.start()
    own_id = mesh.instance_id
    await mesh.stop()
    with pytest.raises(MeshNotRunningError):
        await mesh.invoke(own_id, "echo", 1)
    with pytest.raises(MeshNotRunningError):
        await mesh.broadcast("hello", 1)
    with pytest.raises(MeshNotRunningError):
        await mesh.get_nodes()


async def test_get_nodes_lists_live_nodes_with_hostname_and_self(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    hostname = socket.gethostname()
    assert await a.get_nodes() == [MeshNode(1, hostname, True), MeshNode(2, hostname, False)]
    assert await b.get_nodes() == [MeshNode(1, hostname, False), MeshNode(2, hostname, True)]


async def test_get_nodes_drops_stopped_nodes(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    await b.stop()
    assert [node.instance_id for node in await a.get_nodes()] == [1]


async def test_independent_mesh_keys_do_not_see_each_other(make_mesh: MakeMesh) -> None:
    a = await make_mesh("one")
    b = await make_mesh("two")
    assert (a.instance_id, b.instance_id) == (1, 1)
    assert [node.instance_id for node in await a.get_nodes()] == [1]
    seen: list[str] = []
    b.register_broadcast_handler("hello", lambda data, sender: seen.append(data))
    await a.broadcast("hello", "from one")
    await asyncio.sleep(0.2)
    assert seen == []


async def test_work_before_stop_runs_while_the_node_is_still_a_member(
    make_mesh: MakeMesh,
) -> None:
    """What the client service does: its own cleanup first, then mesh.stop()."""
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("echo", lambda data: data)

    async def cleanup_then_stop() -> list[int]:
        seen_by_b = [node.instance_id for node in await b.get_nodes()]
        assert await a.invoke(b.instance_id, "echo", "still here") == "still here"
        await b.stop()
        return seen_by_b

    assert await cleanup_then_stop() == [1, 2]
    assert [node.instance_id for node in await a.get_nodes()] == [1]


async def test_stop_leaves_no_tasks_behind(make_mesh: MakeMesh) -> None:
    before = asyncio.all_tasks()
    a = await make_mesh()
    b = await make_mesh()

    async def slow(data: object) -> object:
        await asyncio.sleep(10)
        return data

    b.register_handler("slow", slow)
    b.register_broadcast_handler("slow", lambda data, sender: asyncio.sleep(10))
    call = asyncio.ensure_future(a.invoke(b.instance_id, "slow", 1, timeout=0.2))
    await a.broadcast("slow", 1)
    await asyncio.sleep(0.3)
    await a.stop()
    await b.stop()
    with pytest.raises(MeshError):
        await call
    assert asyncio.all_tasks() - before == set()


async def test_failed_start_leaves_the_service_stopped() -> None:
    mesh = MeshService("k", redis="redis://127.0.0.1:1/0")
    with pytest.raises(MeshConnectionError):
        await mesh.start()
    assert mesh.instance_id == 0
    assert not mesh.is_running
    await mesh.stop()


def _start_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "meshsrpc.mesh" and r.levelno == logging.INFO and "started" in r.getMessage()
    ]


async def test_start_logs_one_line_naming_engine_prefix_key_node_and_role(
    make_mesh: MakeMesh, backend: RedisLike, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshsrpc.mesh")
    settings = resolve_redis_settings(backend)
    first = await make_mesh("logged")
    [line] = _start_lines(caplog)
    assert line == (
        f"mesh 'logged': node {first.instance_id} started on {settings.describe()}, "
        f"key prefix {settings.key_prefix!r}, the cleanup leader"
    )
    caplog.clear()
    second = await make_mesh("logged")
    [line] = _start_lines(caplog)
    assert line.endswith(
        f"node {second.instance_id} started on {settings.describe()}, "
        f"key prefix {settings.key_prefix!r}, not the leader"
    )


async def test_a_started_node_knows_whether_it_leads(make_mesh: MakeMesh) -> None:
    first = await make_mesh()
    second = await make_mesh()
    assert (first.is_leader, second.is_leader) == (True, False)


async def test_the_environment_is_read_at_start_not_at_construction(
    monkeypatch: pytest.MonkeyPatch, memory_url: str
) -> None:
    for name in list(os.environ):
        if name.startswith(("MESH_REDIS_", "MUTEX_REDIS_", "REDIS_")):
            monkeypatch.delenv(name)
    mesh = MeshService("k", **FAST)
    monkeypatch.setenv("MESH_REDIS_URL", memory_url)
    await mesh.start()
    try:
        assert mesh.instance_id == 1
    finally:
        await mesh.stop()


async def test_unreachable_redis_names_the_redacted_url_and_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MESH_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    mesh = MeshService("k")
    with pytest.raises(MeshConnectionError) as unreachable:
        await mesh.start()
    text = str(unreachable.value)
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0 (from MESH_REDIS_URL)" in text
    assert "hunter2" not in text
    assert isinstance(unreachable.value, ConnectionError)
    assert not mesh.is_running


async def test_node_removed_by_mistake_registers_itself_again(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    """E.g. declared dead during a long pause, or Redis restarted empty."""
    a = await make_mesh()
    rejoined: list[int] = []
    a.set_rejoined_callback(lambda: rejoined.append(a.instance_id))
    engine = open_mesh_engine(resolve_redis_settings(backend), "k")
    try:
        await engine.deregister(a.instance_id)
        assert await engine.list_nodes() == {}
        await eventually(lambda: rejoined == [1])
        assert await engine.list_nodes() == {1: socket.gethostname()}
    finally:
        await engine.aclose()


async def test_nodes_see_each_other_join_and_leave(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def ids() -> list[int]:
        return [node.instance_id for node in await a.get_nodes()]

    assert await ids() == [1, 2]
    await b.stop()
    await eventually(lambda: ids())  # still answers
    assert await ids() == [1]
