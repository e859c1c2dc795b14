"""A correct app on the upstream-style test proto: must pass mypy --strict with no errors."""

from __future__ import annotations

from srpc_test.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    UComplexRequest,
    UComplexResponse,
    UEchoRequest,
    UEchoResponse,
)
from srpc_test.srpc_test_srpc import (
    ClientMetaDict,
    RoomClosedDict,
    ServerNoticeDict,
    SrpcTestBroadcasts,
    SrpcTestMeshSrpcServer,
    SrpcTestSrpcClient,
    SrpcTestSrpcServer,
)

from meshsrpc import RegisteredClient, SrpcStream


class Server(SrpcTestMeshSrpcServer):
    async def handle_u_echo(self, stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=request.message)

    async def handle_u_complex(self, stream: SrpcStream, request: UComplexRequest) -> UComplexResponse:
        return UComplexResponse(result=request.string_field, count=len(request.array_field))

    async def on_broadcast_room_closed(self, data: RoomClosedDict, sender_instance_id: int) -> None:
        room: str = data["roomId"]
        reason: str | None = data.get("reason")
        members: list[str] = data["members"]
        print(room, reason, members, sender_instance_id)


async def use_server(server: Server, stream: SrpcStream) -> None:
    reply: DNotifyResponse = await server.invoke_d_notify("bob", DNotifyRequest(notification="hi"))
    acknowledged: bool = reply.acknowledged
    computed: DComputeResponse = await server.invoke(stream, "dCompute", DComputeRequest(number=2))
    result: int = computed.result
    also: DNotifyResponse = await server.invoke("bob", "dNotify", DNotifyRequest(), timeout=1.5)
    await server.broadcast_room_closed({"roomId": "r1", "members": ["a", "b"]})
    await server.broadcast_room_closed({"roomId": "r1", "reason": "done", "members": []}, skip_self=True)
    await server.broadcast("serverNotice", {"text": "maintenance", "sentAtMs": 1})
    notice: ServerNoticeDict = {"text": "x", "sentAtMs": 2}
    await server.broadcast("serverNotice", notice, skip_self=True)
    table: SrpcTestBroadcasts = {"roomClosed": {"roomId": "r", "members": []}, "serverNotice": notice}
    print(acknowledged, result, also, table)


def metadata_types(server: Server) -> None:
    meta: ClientMetaDict = {"displayName": "Alice"}
    meta_with_device: ClientMetaDict = {"displayName": "Bob", "device": "phone"}

    def orphaned(node_id: int, clients: list[RegisteredClient[ClientMetaDict]]) -> None:
        for client in clients:
            print(node_id, client.metadata["displayName"])

    server.on_node_clients_orphaned(orphaned)

    def connected(client_id: str, metadata: ClientMetaDict) -> None:
        print(client_id, metadata["displayName"], metadata.get("device"))

    async def disconnected(client_id: str, metadata: ClientMetaDict) -> None:
        print(client_id, metadata)

    server.on_client_connected(connected)
    server.on_client_disconnected(disconnected)
    print(meta, meta_with_device)


class Single(SrpcTestSrpcServer):
    async def handle_u_echo(self, stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=request.message.upper())


async def use_single(server: Single, stream: SrpcStream) -> None:
    reply: DNotifyResponse = await server.invoke_d_notify(stream, DNotifyRequest())
    print(reply)


class Client(SrpcTestSrpcClient):
    async def handle_d_notify(self, request: DNotifyRequest) -> DNotifyResponse:
        return DNotifyResponse(acknowledged=bool(request.notification))


async def use_client() -> None:
    client = Client("ws://127.0.0.1:1/srpc", "alice", client_meta={"displayName": "Alice"})
    echoed: UEchoResponse = await client.invoke_u_echo(UEchoRequest(message="hi"), timeout=2.0)
    complex_: UComplexResponse = await client.invoke("uComplex", UComplexRequest(int_field=1))
    print(echoed.message, complex_.count)


server = Server(mesh_key="typing", heartbeat_interval=0.1)
