"""Two messages named EchoRequest in two packages: the wrong one is an error."""

from __future__ import annotations

from tricky.tricky.v1 import EchoRequest
from tricky.tricky_srpc import TrickySrpcClient


async def use(client: TrickySrpcClient) -> None:
    await client.invoke_u_other(EchoRequest(text="wrong package"))  # E: arg-type
