"""invoke and update_client_metadata: local, remote through the mesh, and their errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from meshsrpc import (
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    MeshClientRedisRegistry,
    MeshService,
    RedisSettings,
)
from service_nodes import FAST, Node, eventually


async def test_local_delivery_calls_client_invoke_fn_directly(two_nodes: tuple[Node, Node]) -> None:
    a, _ = two_nodes
    await a.connect("c1")
    assert await a.service.invoke("c1", "uEcho", {"x": 1}, timeout=2.0) == {
        "type": "uEcho",
        "data": {"x": 1},
        "timeout": 2.0,
    }
    assert a.calls == [("c1", "uEcho", {"x": 1}, 2.0)]


async def test_remote_delivery_through_the_mesh(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await b.connect("c1")
    bound = b.service.forward_safety_timeout
    assert await a.service.invoke("c1", "dNotify", {"text": "hi"}) == {
        "type": "dNotify",
        "data": {"text": "hi"},
        "timeout": bound,
    }
    assert a.calls == []
    assert b.calls == [("c1", "dNotify", {"text": "hi"}, bound)]


async def test_the_owner_does_not_apply_the_callers_shorter_timeout(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    await b.connect("c1")
    answer = await a.service.invoke("c1", "dNotify", None, timeout=1.5)
    assert answer["timeout"] == b.service.forward_safety_timeout == 300.0


async def test_a_callers_timeout_longer_than_the_owners_bound_is_kept(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    b.service.forward_safety_timeout = 1.0
    await b.connect("c1")
    answer = await a.service.invoke("c1", "dNotify", None, timeout=2.5)
    assert answer["timeout"] == 2.5


async def test_unknown_client_raises_client_not_found(two_nodes: tuple[Node, Node]) -> None:
    a, _ = two_nodes
    with pytest.raises(ClientNotFoundError) as caught:
        await a.service.invoke("nobody", "dNotify", None)
    assert caught.value.client_id == "nobody"


async def test_client_disconnected_on_the_remote_node(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await b.connect("c1")
    del b.streams["c1"]  # the registry still names b, but b has no stream
    with pytest.raises(ClientDisconnectedError) as caught:
        await a.service.invoke("c1", "dNotify", None)
    assert caught.value.client_id == "c1"


async def test_other_remote_errors_become_client_invocation_error(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes

    async def broken(type: str, data: Any, timeout: float | None) -> Any:
        raise ValueError("Unhandled message type")

    await b.connect("c1", answer=broken)
    with pytest.raises(ClientInvocationError, match="Unhandled message type"):
        await a.service.invoke("c1", "dCompute", None)


async def test_client_invocation_error_names_the_remote_error(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes

    async def late(type: str, data: Any, timeout: float | None) -> Any:
        raise TimeoutError("dNotify got no reply within 1 s")

    await b.connect("c1", answer=late)
    with pytest.raises(ClientInvocationError) as caught:
        await a.service.invoke("c1", "dNotify", None)
    assert caught.value.error_name == "TimeoutError"


async def test_non_exception_raises_become_client_invocation_error(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes

    class Odd(BaseException):
        pass

    async def odd(type: str, data: Any, timeout: float | None) -> Any:
        raise Odd("not an Exception")

    await b.connect("c1", answer=odd)
    with pytest.raises(ClientInvocationError, match="not an Exception"):
        await a.service.invoke("c1", "dNotify", None)


@pytest.mark.single_instance
async def test_an_error_reply_without_error_name_is_client_invocation_error(
    make_node: Any, redis_settings: RedisSettings
) -> None:
    # A TypeScript node whose client threw a string replies without errorName.
    a = make_node()
    await a.service.start()
    ts_node = MeshService("_mc:svc", redis=redis_settings, **FAST)
    ts_node.register_handler("forward", lambda data: {"error": "thrown string"})
    registry = MeshClientRedisRegistry[Any]("_mc:svc", redis=redis_settings)
    await ts_node.start()
    try:
        await registry.register("c1", ts_node.instance_id, None)
        with pytest.raises(ClientInvocationError, match="thrown string") as caught:
            await a.service.invoke("c1", "dNotify", None)
        assert caught.value.error_name is None
    finally:
        await ts_node.stop()
        await registry.aclose()


async def test_connected_at_is_kept_across_metadata_updates_and_listed(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    await b.connect("c1", {"v": 1})
    first = await a.service.client_registry.get_client("c1")
    await asyncio.sleep(0.01)
    assert await a.service.update_client_metadata("c1", {"v": 2}) is True
    listed = await a.service.client_registry.list_clients()
    assert first is not None
    assert [(c.client_id, c.connected_at, c.metadata) for c in listed] == [
        ("c1", first.connected_at, {"v": 2})
    ]


async def test_update_client_metadata_local(two_nodes: tuple[Node, Node]) -> None:
    a, _ = two_nodes
    await a.connect("c1", {"v": 1})
    assert await a.service.update_client_metadata("c1", {"v": 2, "tags": []}) is True
    client = await a.service.client_registry.get_client("c1")
    assert client is not None and client.metadata == {"v": 2, "tags": []}


async def test_update_client_metadata_remote_goes_to_the_owner(
    make_node: Any,
) -> None:
    applied: list[tuple[str, Any]] = []

    async def apply(client_id: str, metadata: Any) -> bool:
        applied.append((client_id, metadata))
        return True

    a = make_node()
    b = make_node(client_update_meta_fn=apply)
    await a.service.start()
    await b.service.start()
    await b.connect("c1", {"v": 1})
    assert await a.service.update_client_metadata("c1", {"v": 2}) is True
    assert applied == [("c1", {"v": 2})]


async def test_update_client_metadata_remote_writes_the_registry_by_default(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    await b.connect("c1", {"v": 1})
    assert await a.service.update_client_metadata("c1", {"v": 2}) is True
    client = await a.service.client_registry.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (b.id, {"v": 2})


async def test_update_client_metadata_false_for_unknown_client(
    two_nodes: tuple[Node, Node],
) -> None:
    a, _ = two_nodes
    assert await a.service.update_client_metadata("nobody", {"v": 1}) is False


async def test_update_client_metadata_rejects_non_json_metadata(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    await b.connect("c1", {"v": 1})
    with pytest.raises(TypeError):
        await a.service.update_client_metadata("c1", {"v": object()})


async def test_100_concurrent_cross_node_invokes_get_their_own_answers(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes

    async def slow_echo(type: str, data: Any, timeout: float | None) -> Any:
        await asyncio.sleep(0.001 * (data["i"] % 7))
        return {"i": data["i"]}

    await b.connect("c1", answer=slow_echo)
    answers = await asyncio.gather(
        *(a.service.invoke("c1", "dNotify", {"i": i}) for i in range(100))
    )
    assert answers == [{"i": i} for i in range(100)]


async def test_delivery_on_a_memory_mesh(make_node: Any, memory_url: str) -> None:
    a, b = make_node(redis=memory_url), make_node(redis=memory_url)
    await a.service.start()
    await b.service.start()
    await b.connect("c1")
    assert (await a.service.invoke("c1", "uEcho", 1))["data"] == 1
    assert await a.service.update_client_metadata("c1", {"v": 2}) is True
    client = await a.service.client_registry.get_client("c1")
    assert client is not None and client.metadata == {"v": 2}


async def test_broadcast_passthrough(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    got: list[tuple[Any, int]] = []
    b.service.register_broadcast_handler("hello", lambda data, sender: got.append((data, sender)))
    await a.service.broadcast("hello", {"msg": "hi"})
    await eventually(lambda: bool(got))
    assert got == [({"msg": "hi"}, a.id)]
