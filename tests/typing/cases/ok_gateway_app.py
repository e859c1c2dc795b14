"""A correct use of the gateway: serving it, and calling it with the generated grpclib stub."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

from grpclib.client import Channel
from srpc_test_gateway.sgnl24.TestRpc import DNotifyRequest, DNotifyResponse, RoomClosed
from srpc_test_gateway.sgnl24.TestRpc.gateway import (
    ClientInfo,
    DNotifyGatewayRequest,
    ListClientsRequest,
    PresenceEvent,
    PresenceKind,
    RoomClosedBroadcastRequest,
    WatchPresenceRequest,
)
from srpc_test_gateway.srpc_test_gateway import SrpcTestGateway, SrpcTestGatewayStub
from srpc_test_gateway.srpc_test_srpc import SrpcTestMeshSrpcServer

from meshsrpc.gateway import GatewayServer, bearer_token


async def serve(server: SrpcTestMeshSrpcServer) -> int:
    served: GatewayServer = await server.serve_gateway("127.0.0.1", 0, authenticate=bearer_token("t"))
    other = await SrpcTestGateway(server).serve()
    await other.close()
    return served.port


async def call(channel: Channel) -> None:
    stub = SrpcTestGatewayStub(channel, metadata={"authorization": "Bearer t"})
    request = DNotifyGatewayRequest(
        client_id="bob",
        request=DNotifyRequest(notification="hi"),
        timeout=datetime.timedelta(seconds=2),
    )
    reply: DNotifyResponse = await stub.d_notify(request, timeout=3.0)
    acknowledged: bool = reply.acknowledged
    await stub.broadcast_room_closed(RoomClosedBroadcastRequest(data=RoomClosed(room_id="a")))
    clients: AsyncIterator[ClientInfo] = stub.list_clients(ListClientsRequest(node_id=1))
    async for client in clients:
        node: int = client.node_id
        print(node)
    async for event in stub.watch_presence(WatchPresenceRequest()):
        first: PresenceEvent = event
        if first.kind == PresenceKind.MOVED:
            print(first.previous_node_id)
    print(acknowledged)
