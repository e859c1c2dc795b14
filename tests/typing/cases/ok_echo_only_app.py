"""A correct app on a proto without downstream calls, broadcasts or ClientMeta."""

from __future__ import annotations

from typing import Any

from echo_only import UEchoRequest, UEchoResponse
from echo_only.echo_only_srpc import EchoOnlyMeshSrpcServer, EchoOnlySrpcClient

from meshsrpc import SrpcStream


class Echo(EchoOnlyMeshSrpcServer):
    async def handle_u_echo(self, stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(text=request.text)


async def use(client: EchoOnlySrpcClient, server: Echo) -> None:
    reply: UEchoResponse = await client.invoke("uEcho", UEchoRequest(text="x"))
    direct: UEchoResponse = await client.invoke_u_echo(UEchoRequest(text="y"))
    meta: dict[str, Any] = {"anything": 1}
    print(reply, direct, meta, server)
