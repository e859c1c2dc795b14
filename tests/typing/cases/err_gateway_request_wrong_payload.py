"""A gateway request holding another call's request message."""

from __future__ import annotations

from srpc_test_gateway.sgnl24.TestRpc import DComputeRequest
from srpc_test_gateway.sgnl24.TestRpc.gateway import DNotifyGatewayRequest

request = DNotifyGatewayRequest(client_id="bob", request=DComputeRequest(number=1))  # E: arg-type
