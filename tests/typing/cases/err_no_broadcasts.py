"""An app without broadcasts: broadcast accepts nothing."""

from __future__ import annotations

from echo_only.echo_only_srpc import EchoOnlyMeshSrpcServer


async def run(server: EchoOnlyMeshSrpcServer) -> None:
    await server.broadcast("anything", {})  # E: arg-type
