"""MeshSrpcServer: what happens at connect, activation and disconnect, and at mesh start/stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from meshsrpc import ClientNotFoundError, SrpcConflictError, SrpcError, SrpcStream
from meshsrpc.testing import lifecycle_settled

from tests.generated.sgnl24.TestRpc import (
    DNotifyRequest,
    DNotifyResponse,
    UEchoRequest,
    UEchoResponse,
)
from tests.mesh_server.mesh_server_support import (
    MakeClient,
    MakeNode,
    ProbeBackend,
    Recorder,
    eventually,
    settle,
)

pytestmark = pytest.mark.timeout(60)

MakeProbe = Callable[[], ProbeBackend]


async def test_connect_registers_the_client_and_reports_it(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    connected = Recorder()
    node.on_client_connected(connected)
    await make_client(node, "c1", client_meta={"userId": "u1"}).connect()

    await eventually(lambda: connected.events == [("c1", {"userId": "u1"})])
    client = await node.client_registry.get_client("c1")
    assert client is not None
    assert client.node_id == node.mesh_instance_id
    assert client.metadata == {"userId": "u1"}


async def test_connect_is_refused_promptly_when_registration_raises(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    probe.fail.add("reserve")
    node = await make_node(registry_backend=probe)
    connected = Recorder()
    node.on_client_connected(connected)

    with pytest.raises(SrpcError) as refused:
        async with asyncio.timeout(5):
            await make_client(node, "c1").connect()
    assert not isinstance(refused.value, SrpcConflictError)
    await eventually(lambda: not node.streams_by_id)
    await lifecycle_settled(node)
    assert connected.events == []
    assert await node.client_registry.get_client("c1") is None


async def test_connection_handlers_may_call_the_client_without_delaying_connect(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    answers: list[DNotifyResponse] = []
    finish = asyncio.Event()

    async def greet(stream: SrpcStream) -> None:
        answers.append(await node.invoke(stream, "dNotify", DNotifyRequest(notification="hi")))
        await finish.wait()

    node.register_connection_handler(greet)
    connected = Recorder()
    node.on_client_connected(connected)

    async with asyncio.timeout(5):
        await make_client(node, "c1").connect()  # returns while the handler still runs
    await eventually(lambda: answers == [DNotifyResponse(acknowledged=True)])
    assert connected.events == []
    finish.set()
    await eventually(lambda: connected.ids() == ["c1"])


async def test_a_raising_connection_handler_disconnects_the_client(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(registry_backend=probe)

    def refuse(stream: SrpcStream) -> None:
        raise RuntimeError("not today")

    node.register_connection_handler(refuse)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1")
    await client.connect()

    await eventually(lambda: not client.is_connected)
    # The reservation made at connect is gone again (pending entries are hidden from reads).
    await eventually(lambda: probe.count("unregister", "c1") == 1)
    assert await probe.inner.list_clients() == []
    assert await probe.inner.cleanup_node(node.mesh_instance_id) == []
    await lifecycle_settled(node)
    assert connected.events == [] and disconnected.events == []


async def test_client_requests_wait_for_activation_then_run_in_order(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    handled: list[str] = []

    def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        handled.append(request.message)
        return UEchoResponse(message=request.message.upper())

    node.register_message_handler("uEcho", echo)
    release = asyncio.Event()

    async def hold(stream: SrpcStream) -> None:
        await release.wait()

    node.register_connection_handler(hold)
    client = make_client(node, "c1")
    await client.connect()
    calls = [
        asyncio.create_task(client.invoke("uEcho", UEchoRequest(message=m)))
        for m in ("a", "b", "c")
    ]
    await settle()
    assert handled == []
    release.set()
    responses = await asyncio.gather(*calls)
    assert handled == ["a", "b", "c"]
    assert [r.message for r in responses] == ["A", "B", "C"]


async def test_a_client_is_not_invocable_through_the_mesh_before_activation(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    release = asyncio.Event()

    async def hold(stream: SrpcStream) -> None:
        await release.wait()

    a.register_connection_handler(hold)
    await make_client(a, "c1").connect()
    await settle()
    for node in (a, b):
        with pytest.raises(ClientNotFoundError):
            await node.invoke("c1", "dNotify", DNotifyRequest(notification="early"))
    release.set()

    async def reachable() -> bool:
        try:
            response = await b.invoke("c1", "dNotify", DNotifyRequest(notification="now"))
        except ClientNotFoundError:
            return False
        return bool(response.acknowledged)

    await eventually(reachable)


async def test_disconnect_unregisters_and_reports_the_client(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1", client_meta={"userId": "u1"})
    await client.connect()
    await eventually(lambda: connected.ids() == ["c1"])

    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", {"userId": "u1"})])
    assert await node.client_registry.get_client("c1") is None


async def test_no_disconnect_callback_for_a_stream_that_never_activated(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    entered = asyncio.Event()

    async def hold(stream: SrpcStream) -> None:
        entered.set()
        await asyncio.Event().wait()

    node.register_connection_handler(hold)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1")
    await client.connect()
    await entered.wait()
    await client.disconnect()

    await eventually(lambda: not node.streams_by_id)
    await lifecycle_settled(node)
    assert connected.events == [] and disconnected.events == []
    assert await node.client_registry.list_clients() == []


async def test_no_disconnect_callback_when_the_client_reconnected_to_this_node(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    first = make_client(node, "c1", protocol_version=1)
    await first.connect()
    await eventually(lambda: connected.ids() == ["c1"])

    second = make_client(node, "c1", protocol_version=1)  # v1 kicks the first stream
    await second.connect()
    await eventually(lambda: connected.ids() == ["c1", "c1"])
    await eventually(lambda: not first.is_connected)
    await eventually(lambda: len(node.streams_by_id) == 1)
    await lifecycle_settled(node)
    assert disconnected.events == []
    client = await node.client_registry.get_client("c1")
    assert client is not None and client.node_id == node.mesh_instance_id
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response == DNotifyResponse(acknowledged=True)


async def test_a_reconnect_here_that_never_activates_reports_the_client_left(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()

    def refuse_the_second(stream: SrpcStream) -> None:
        if stream.meta.get("s") == "two":
            raise RuntimeError("not this one")

    node.register_connection_handler(refuse_the_second)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    first = make_client(
        node, "c1", protocol_version=1, client_meta={"s": "one"}, enable_reconnect=False
    )
    await first.connect()
    await eventually(lambda: connected.ids() == ["c1"])

    second = make_client(
        node, "c1", protocol_version=1, client_meta={"s": "two"}, enable_reconnect=False
    )
    await second.connect()  # takes over from the first stream, then is refused
    await eventually(lambda: not first.is_connected and not second.is_connected)

    await eventually(lambda: disconnected.events == [("c1", {"s": "one"})])
    await eventually(lambda: not node.streams_by_id)
    await lifecycle_settled(node)
    assert disconnected.events == [("c1", {"s": "one"})]
    assert connected.events == [("c1", {"s": "one"})]
    assert await node.client_registry.list_clients() == []


async def test_a_reconnect_does_not_wait_for_earlier_callbacks(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    release = asyncio.Event()
    order: list[str] = []

    async def slow_connected(client_id: str, metadata: Any) -> None:
        order.append("connected")
        await release.wait()

    node.on_client_connected(slow_connected)
    node.on_client_disconnected(lambda client_id, metadata: order.append("disconnected"))
    first = make_client(node, "c1")
    await first.connect()
    await eventually(lambda: order == ["connected"])
    await first.disconnect()
    await eventually(lambda: not node.streams_by_id)

    async with asyncio.timeout(5):  # not held up by the blocked callback
        await make_client(node, "c1").connect()

        async def invocable() -> bool:
            try:
                await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
            except ClientNotFoundError:
                return False
            return True

        await eventually(invocable)
    assert order == ["connected"]
    release.set()
    await eventually(lambda: order == ["connected", "disconnected", "connected"])


@pytest.mark.parametrize("metadata", [0, "", [], None, False, ["a", "b"], {}])
async def test_falsy_and_list_metadata_reach_the_callbacks(
    make_node: MakeNode, make_client: MakeClient, metadata: Any
) -> None:
    node = await make_node(extract_metadata=lambda stream: metadata)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1")
    await client.connect()
    await eventually(lambda: connected.events == [("c1", metadata)])
    registered = await node.client_registry.get_client("c1")
    assert registered is not None
    if metadata != []:  # Lua's cjson stores an empty array as {} (WIRE.md capture notes)
        assert registered.metadata == metadata
    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", metadata)])


async def test_callback_errors_are_caught(make_node: MakeNode, make_client: MakeClient) -> None:
    node = await make_node()
    seen = Recorder()

    def broken(client_id: str, metadata: Any) -> None:
        raise RuntimeError("callback bug")

    async def broken_async(client_id: str, metadata: Any) -> None:
        raise RuntimeError("async callback bug")

    for register in (node.on_client_connected, node.on_client_disconnected):
        register(broken)
        register(broken_async)
        register(seen)
    client = make_client(node, "c1")
    await client.connect()
    await eventually(lambda: seen.ids() == ["c1"])
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response.acknowledged
    await client.disconnect()
    await eventually(lambda: seen.ids() == ["c1", "c1"])


async def test_mesh_start_and_stop(make_node: MakeNode, make_client: MakeClient) -> None:
    node = await make_node(start=False)
    assert node.mesh_instance_id == 0
    await make_client(node, "c1").connect()
    with pytest.raises(ClientNotFoundError):
        await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))

    await node.mesh_start()
    assert node.mesh_instance_id > 0
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response.acknowledged

    await node.mesh_stop()
    assert node.mesh_instance_id == 0
    with pytest.raises(ClientNotFoundError):
        await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert node.streams_by_client_id["c1"].is_open  # streams stay until close()

    await node.mesh_start()  # a restart registers the streams again
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response.acknowledged


async def stall_registry_steps(
    node: Any, probe: ProbeBackend, client_id: str, metadata: Any
) -> asyncio.Task[bool]:
    """Hold the client's registry queue on a metadata update, once it is activated.

    Steps queued for the client meanwhile wait until ``probe.release("update_metadata")``.
    """
    await eventually(lambda: probe.count("activate", client_id) == 1)
    probe.hold("update_metadata")
    update = asyncio.create_task(node.update_client_metadata(client_id, metadata))
    await probe.entered["update_metadata"].wait()
    return update


async def test_a_refused_stream_never_removes_the_entry_of_the_stream_holding_the_client(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    # The refused stream's release runs after the holder has closed (its queue was busy):
    # it must still leave the entry to the holder, whose release reports the leave. A
    # long node TTL keeps the "left unowned" fallback from reporting it instead.
    probe = make_probe()
    node = await make_node(registry_backend=probe, node_ttl=30.0)
    disconnected = Recorder()
    node.on_client_disconnected(disconnected)
    holder = make_client(node, "c1", client_meta={"s": "one"}, enable_reconnect=False)
    await holder.connect()
    update = await stall_registry_steps(node, probe, "c1", {"s": "one", "x": 1})

    with pytest.raises(SrpcConflictError):
        await make_client(node, "c1", client_meta={"s": "two"}).connect()
    await holder.disconnect()
    await eventually(lambda: not node.streams_by_id)
    probe.release("update_metadata")
    await update

    await eventually(lambda: disconnected.events == [("c1", {"s": "one", "x": 1})])
    assert await node.client_registry.list_clients() == []


async def test_a_stream_kicked_by_another_node_is_owed_to_no_stream_refused_after_it(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    # The client moved to node b; a stranger then tried node a. The kicked stream's
    # release runs while the stranger is a's newest stream: the client did not leave a,
    # and when it leaves b later, b alone reports it.
    probe = make_probe()
    a = await make_node(registry_backend=probe, node_ttl=1.0)
    b = await make_node()
    a_disconnected, b_connected, b_disconnected = Recorder(), Recorder(), Recorder()
    a.on_client_disconnected(a_disconnected)
    b.on_client_connected(b_connected)
    b.on_client_disconnected(b_disconnected)
    first = make_client(a, "c1", client_meta={"s": "one"}, enable_reconnect=False)
    await first.connect()
    update = await stall_registry_steps(a, probe, "c1", {"s": "one", "x": 1})

    mover = make_client(b, "c1", client_meta={"s": "two"}, protocol_version=1)
    await mover.connect()
    await eventually(lambda: not first.is_connected)
    stranger = asyncio.create_task(make_client(a, "c1", client_meta={"s": "three"}).connect())
    await eventually(lambda: "c1" in a.streams_by_client_id)  # it waits behind the update
    probe.release("update_metadata")
    await update
    with pytest.raises(SrpcConflictError):
        await stranger

    await eventually(lambda: b_connected.ids() == ["c1"])
    await mover.disconnect()  # the client leaves b: b reports it, and only b
    await eventually(lambda: b_disconnected.ids() == ["c1"])
    await asyncio.sleep(1.5)  # past a's node TTL: a's "left unowned" check has run
    assert a_disconnected.events == []


async def test_requests_wait_until_on_client_connected_has_finished(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    sessions: dict[str, str] = {}
    entered, release = asyncio.Event(), asyncio.Event()

    async def connected(client_id: str, metadata: Any) -> None:
        entered.set()
        await release.wait()
        sessions[client_id] = "ready"  # per-client state the handlers rely on

    node.on_client_connected(connected)
    node.register_message_handler(
        "uEcho",
        lambda stream, request: UEchoResponse(message=sessions.get(stream.client_id, "missing")),
    )
    client = make_client(node, "c1")
    await client.connect()
    await entered.wait()
    call = asyncio.create_task(client.invoke("uEcho", UEchoRequest(message="hi")))
    stream = node.streams_by_client_id["c1"]
    assert stream.session is not None
    await eventually(
        lambda: stream.session is not None and stream.session.protocol.queued_requests == 1
    )
    assert not call.done()
    release.set()
    response = await asyncio.wait_for(call, 5)
    assert response.message == "ready"


async def test_held_requests_run_in_the_order_they_came(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node()
    release = asyncio.Event()
    seen: list[str] = []

    async def connected(client_id: str, metadata: Any) -> None:
        await release.wait()

    def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        seen.append(request.message)
        return UEchoResponse(message=request.message)

    node.on_client_connected(connected)
    node.register_message_handler("uEcho", echo)
    client = make_client(node, "c1")
    await client.connect()
    calls = [
        asyncio.create_task(client.invoke("uEcho", UEchoRequest(message=str(i)))) for i in range(5)
    ]
    stream = await _stream_of(node, "c1")
    await eventually(
        lambda: stream.session is not None and stream.session.protocol.queued_requests == 5
    )
    release.set()
    await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert seen == ["0", "1", "2", "3", "4"]


async def _stream_of(node: Any, client_id: str) -> SrpcStream:
    await eventually(lambda: client_id in node.streams_by_client_id)
    stream: SrpcStream = node.streams_by_client_id[client_id]
    return stream


async def test_async_with_joins_the_mesh_and_on_exit_leaves_it_and_closes(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    observer = await make_node(listen=False)
    node = await make_node(start=False)
    client = make_client(node, "c1")
    async with node as entered:
        assert entered is node and node.mesh_instance_id > 0
        await client.connect()
        await eventually(lambda: observer.client_registry.get_client("c1"))
    assert node.mesh_instance_id == 0 and not node.streams_by_id
    assert await observer.client_registry.get_client("c1") is None
