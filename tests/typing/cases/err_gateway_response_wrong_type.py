"""The gateway stub's response used as another call's response."""

from __future__ import annotations

from grpclib.client import Channel
from srpc_test_gateway.sgnl24.TestRpc import DComputeResponse
from srpc_test_gateway.sgnl24.TestRpc.gateway import DNotifyGatewayRequest
from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub


async def call(channel: Channel) -> None:
    stub = SrpcTestGatewayStub(channel)
    reply: DComputeResponse = await stub.d_notify(DNotifyGatewayRequest(client_id="bob"))  # E: assignment
    print(reply)
