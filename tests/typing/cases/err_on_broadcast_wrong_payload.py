"""an on_broadcast_<type> override typed with another payload."""

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
    RoomClosedDict,
    ServerNoticeDict,
    SrpcTestMeshSrpcServer,
    SrpcTestSrpcClient,
    SrpcTestSrpcServer,
)

from meshsrpc import SrpcStream



class Server(SrpcTestMeshSrpcServer):
    async def on_broadcast_room_closed(self, data: ServerNoticeDict, sender_instance_id: int) -> None:  # E: override
        print(data)
