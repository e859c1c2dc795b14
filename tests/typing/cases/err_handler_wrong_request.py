"""a handler override whose request type is wrong."""

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
    async def handle_u_echo(self, stream: SrpcStream, request: UComplexRequest) -> UEchoResponse:  # E: override
        return UEchoResponse()
