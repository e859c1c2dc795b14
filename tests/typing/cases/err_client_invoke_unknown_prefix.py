"""the client invoking a downstream prefix."""

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



async def run(client: SrpcTestSrpcClient) -> None:
    await client.invoke("dNotify", DNotifyRequest())  # E: call-overload
