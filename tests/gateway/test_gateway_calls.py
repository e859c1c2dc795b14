"""Calling WebSocket clients by id through the gRPC gateway (grpclib), on a real 2-node mesh."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from srpc_test_gateway.sgnl24.TestRpc import (
    DComputeRequest,
    DNotifyRequest,
    DRequestDataRequest,
    RoomClosed,
    ServerNotice,
)
from srpc_test_gateway.sgnl24.TestRpc.gateway import (
    DComputeGatewayRequest,
    DNotifyGatewayRequest,
    DRequestDataGatewayRequest,
    RoomClosedBroadcastRequest,
    ServerNoticeBroadcastRequest,
)

from tests.gateway.conftest import Mesh, eventually


def compute(
    client_id: str,
    number: int,
    operation: str = "double",
    timeout: datetime.timedelta | None = None,
) -> DComputeGatewayRequest:
    """A dCompute call through the gateway (operations: see conftest.Client)."""
    return DComputeGatewayRequest(
        client_id=client_id,
        request=DComputeRequest(number=number, operation=operation),
        timeout=timeout,
    )


async def test_call_reaches_a_client_on_the_other_node(mesh: Mesh) -> None:
    await mesh.connect(mesh.b, "bob")
    reply = await mesh.stub.d_compute(compute("bob", 21))
    assert reply.result == 42


async def test_call_reaches_a_client_on_the_serving_node(mesh: Mesh) -> None:
    await mesh.connect(mesh.a, "alice")
    reply = await mesh.stub.d_notify(
        DNotifyGatewayRequest(client_id="alice", request=DNotifyRequest(notification="hi"))
    )
    assert reply.acknowledged is True


async def test_unknown_client_is_not_found(mesh: Mesh) -> None:
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_compute(compute("nobody", 1))
    assert caught.value.status is Status.NOT_FOUND
    assert "nobody" in (caught.value.message or "")


async def test_client_disconnecting_during_the_call_is_unavailable(mesh: Mesh) -> None:
    bob = await mesh.connect(mesh.b, "bob")
    call = asyncio.create_task(mesh.stub.d_compute(compute("bob", 1, "hold")))
    await bob.entered.wait()
    await bob.disconnect()
    with pytest.raises(GRPCError) as caught:
        await call
    assert caught.value.status is Status.UNAVAILABLE


async def test_request_timeout_shorter_than_the_handler_is_deadline_exceeded(mesh: Mesh) -> None:
    bob = await mesh.connect(mesh.b, "bob")
    request = compute("bob", 1, "hold", timeout=datetime.timedelta(milliseconds=300))
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_compute(request)
    assert caught.value.status is Status.DEADLINE_EXCEEDED
    assert bob.entered.is_set()


async def test_grpc_deadline_shorter_than_the_handler_ends_the_call(mesh: Mesh) -> None:
    bob = await mesh.connect(mesh.b, "bob")
    # grpclib raises its own TimeoutError at the deadline; the gateway stops too.
    with pytest.raises(asyncio.TimeoutError):
        await mesh.stub.d_compute(compute("bob", 1, "hold"), timeout=0.3)
    assert bob.entered.is_set()
    # The client is still callable once its held handler lets go.
    bob.release.set()
    assert (await mesh.stub.d_compute(compute("bob", 5))).result == 10


async def test_client_error_is_aborted_with_its_message(mesh: Mesh) -> None:
    await mesh.connect(mesh.b, "bob")
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_compute(compute("bob", 7, "fail"))
    assert caught.value.status is Status.ABORTED
    assert caught.value.message == "cannot compute 7"


async def test_client_error_on_the_serving_node_is_aborted_too(mesh: Mesh) -> None:
    await mesh.connect(mesh.a, "alice")
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_compute(compute("alice", 7, "fail"))
    assert caught.value.status is Status.ABORTED
    assert caught.value.message == "cannot compute 7"


async def test_call_the_client_does_not_handle_is_unimplemented(mesh: Mesh) -> None:
    await mesh.connect(mesh.b, "bob")
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_request_data(
            DRequestDataGatewayRequest(client_id="bob", request=DRequestDataRequest(data_size=1))
        )
    assert caught.value.status is Status.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (DComputeGatewayRequest(request=DComputeRequest(number=1)), "client_id is empty"),
        (DComputeGatewayRequest(client_id="bob"), "request is missing"),
        (
            DComputeGatewayRequest(
                client_id="bob",
                request=DComputeRequest(number=1),
                timeout=datetime.timedelta(seconds=-1),
            ),
            "timeout must be positive",
        ),
    ],
    ids=["no client id", "no request", "negative timeout"],
)
async def test_bad_request_is_invalid_argument(
    mesh: Mesh, request_: DComputeGatewayRequest, words: str
) -> None:
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.d_compute(request_)
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message == words


async def test_broadcast_reaches_every_node(mesh: Mesh) -> None:
    await mesh.stub.broadcast_room_closed(
        RoomClosedBroadcastRequest(data=RoomClosed(room_id="r1", members=["x", "y"]))
    )
    expected = {"roomId": "r1", "members": ["x", "y"]}
    await eventually(lambda: mesh.a.rooms_closed and mesh.b.rooms_closed)
    assert mesh.a.rooms_closed == [expected] == mesh.b.rooms_closed


async def test_broadcast_payload_keeps_64_bit_integers_as_numbers(mesh: Mesh) -> None:
    seen: list[object] = []
    mesh.b.register_broadcast_handler("serverNotice", lambda data, _sender: seen.append(data))
    await mesh.stub.broadcast_server_notice(
        ServerNoticeBroadcastRequest(data=ServerNotice(text="t", sent_at_ms=2**40))
    )
    await eventually(lambda: seen)
    assert seen == [{"text": "t", "sentAtMs": 2**40}]


async def test_broadcast_without_data_is_invalid_argument(mesh: Mesh) -> None:
    with pytest.raises(GRPCError) as caught:
        await mesh.stub.broadcast_room_closed(RoomClosedBroadcastRequest())
    assert caught.value.status is Status.INVALID_ARGUMENT
