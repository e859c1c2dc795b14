"""An app without downstream calls: the server's invoke accepts nothing."""

from __future__ import annotations

from echo_only import UEchoRequest
from echo_only.echo_only_srpc import EchoOnlyMeshSrpcServer


async def run(server: EchoOnlyMeshSrpcServer) -> None:
    await server.invoke("c1", "uEcho", UEchoRequest())  # E: arg-type
