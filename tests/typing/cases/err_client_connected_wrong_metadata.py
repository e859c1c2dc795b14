"""on_client_connected is typed with ClientMetaDict: a handler for other metadata is an error."""

from __future__ import annotations

from srpc_test.srpc_test_srpc import ServerNoticeDict, SrpcTestMeshSrpcServer


def connected(client_id: str, metadata: ServerNoticeDict) -> None:
    print(client_id, metadata)


def register(server: SrpcTestMeshSrpcServer) -> None:
    server.on_client_connected(connected)  # E: arg-type
