"""start/stop: what the service does when not running, and what stop cleans up."""

from __future__ import annotations

import os
from typing import Any

import pytest
from meshsrpc import (
    ClientNotFoundError,
    MeshClientMemoryRegistry,
    MeshClientRedisRegistry,
    MeshClientService,
    MeshNotRunningError,
    RedisConfigurationError,
)
from service_nodes import FAST, Node


async def _assert_inert(node: Node) -> None:
    assert await node.service.register_client("c1", {"v": 1}) is True
    assert await node.service.unregister_client("c1") is False
    assert await node.service.update_client_metadata("c1", {"v": 2}) is False
    with pytest.raises(ClientNotFoundError):
        await node.service.invoke("c1", "dNotify", None)


async def test_not_started_register_is_a_no_op_and_the_rest_refuses(make_node: Any) -> None:
    node = make_node()
    await _assert_inert(node)
    assert node.service.instance_id == 0


async def test_after_stop_register_is_a_no_op_and_the_rest_refuses(make_node: Any) -> None:
    node = make_node()
    await node.service.start()
    await node.connect("c0")
    await node.service.stop()
    await _assert_inert(node)


async def test_invoke_before_start_says_the_service_is_not_running(make_node: Any) -> None:
    node = make_node()
    with pytest.raises(ClientNotFoundError, match=r"not running \(call start\(\) first\)"):
        await node.service.invoke("c1", "dNotify", None)


async def test_not_running_register_writes_nothing(make_node: Any) -> None:
    backend = MeshClientMemoryRegistry[Any]()
    node = make_node(registry_backend=backend)
    await node.service.register_client("c1", {"v": 1})
    assert await backend.list_clients() == []


async def test_stop_cleans_up_own_clients_only(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("mine-1")
    await a.connect("mine-2")
    await b.connect("theirs")
    await a.service.stop()
    listed = await b.service.client_registry.list_clients()
    assert [c.client_id for c in listed] == ["theirs"]


async def test_stop_never_started_is_fine(make_node: Any) -> None:
    node = make_node()
    await node.service.stop()
    await node.service.stop()


async def test_stop_is_idempotent(make_node: Any) -> None:
    node = make_node()
    await node.service.start()
    await node.service.stop()
    await node.service.stop()
    assert not node.service.is_running


@pytest.mark.single_instance
async def test_stop_closes_a_backend_it_created(
    make_node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    original = MeshClientRedisRegistry.aclose

    async def tracked(self: MeshClientRedisRegistry[Any]) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(MeshClientRedisRegistry, "aclose", tracked)
    node = make_node()
    await node.service.start()
    await node.service.stop()
    assert closed == [node.service.client_registry.backend]


async def test_stop_does_not_close_a_given_backend(make_node: Any) -> None:
    closed: list[str] = []

    class Tracked(MeshClientMemoryRegistry[Any]):
        async def aclose(self) -> None:
            closed.append("given")

    node = make_node(registry_backend=Tracked())
    await node.service.start()
    await node.service.stop()
    assert closed == []


async def test_start_twice_raises(make_node: Any) -> None:
    node = make_node()
    await node.service.start()
    with pytest.raises(Exception, match="already running"):
        await node.service.start()


async def test_reserve_hides_until_activate(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    assert await a.service.reserve_client("c1", {"v": 1}) is None
    with pytest.raises(ClientNotFoundError):
        await b.service.invoke("c1", "dNotify", None)
    a.streams["c1"] = _echo
    assert await a.service.activate_client("c1", {"v": 1}) is True
    assert (await b.service.invoke("c1", "dNotify", 5))["data"] == 5


async def _echo(type: str, data: Any, timeout: float | None) -> Any:
    return {"data": data}


async def test_restart_after_stop_works(make_node: Any) -> None:
    node = make_node()
    await node.service.start()
    first_id = node.id
    await node.service.stop()
    await node.service.start()
    assert node.id != first_id
    await node.connect("c1", {"v": 1})
    assert (await node.service.invoke("c1", "uEcho", 7))["data"] == 7
    client = await node.service.client_registry.get_client("c1")
    assert client is not None and client.node_id == node.id


async def _no_clients(client_id: str, type: str, data: Any, timeout: float | None) -> Any:
    raise AssertionError("no client is called here")


def _forget_redis_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("MESH_REDIS_", "MUTEX_REDIS_", "REDIS_")):
            monkeypatch.delenv(name)


async def test_the_environment_is_read_at_start_not_at_construction(
    monkeypatch: pytest.MonkeyPatch, memory_url: str
) -> None:
    _forget_redis_env(monkeypatch)
    service: MeshClientService[Any] = MeshClientService("svc", _no_clients, **FAST)
    monkeypatch.setenv("MESH_REDIS_URL", memory_url)
    await service.start()
    try:
        assert service.instance_id > 0
        assert await service.register_client("c1", {"v": 1})
        assert await service.client_registry.get_client("c1") is not None
    finally:
        await service.stop()


async def test_nothing_configured_fails_at_start_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_redis_env(monkeypatch)
    service: MeshClientService[Any] = MeshClientService("svc", _no_clients, **FAST)
    with pytest.raises(MeshNotRunningError):
        service.client_registry  # noqa: B018 - the default registry exists from start() on
    with pytest.raises(RedisConfigurationError, match="MESH_REDIS_URL"):
        await service.start()
    assert not service.is_running
