"""a broadcast payload with a value of the wrong type."""

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



async def run(server: SrpcTestMeshSrpcServer) -> None:
    await server.broadcast_server_notice({"text": "hi", "sentAtMs": "now"})  # E: typeddict-item
