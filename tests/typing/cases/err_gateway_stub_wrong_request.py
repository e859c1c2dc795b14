"""The gateway stub's rpc with another rpc's request message."""

from __future__ import annotations

from grpclib.client import Channel
from srpc_test_gateway.sgnl24.TestRpc import DComputeRequest
from srpc_test_gateway.sgnl24.TestRpc.gateway import DComputeGatewayRequest
from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub


async def call(channel: Channel) -> None:
    stub = SrpcTestGatewayStub(channel)
    await stub.d_notify(DComputeGatewayRequest(client_id="bob", request=DComputeRequest(number=1)))  # E: arg-type
