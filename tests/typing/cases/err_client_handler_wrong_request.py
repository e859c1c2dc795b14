"""a client handler override whose request type is wrong."""

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



class Client(SrpcTestSrpcClient):
    async def handle_d_notify(self, request: DComputeRequest) -> DNotifyResponse:  # E: override
        return DNotifyResponse()
