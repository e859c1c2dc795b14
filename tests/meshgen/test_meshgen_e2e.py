"""End to end: generated classes over a real socket and a real Redis mesh of two nodes."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from meshgen.generate import Request, generate
from meshgen.output import write_files
from meshgen_helpers import REPO
from meshsrpc import MeshSrpcServer, RedisSettings, SrpcError
from meshsrpc.testing import FAST_DYING_MESH, eventually

FAST = FAST_DYING_MESH


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The test proto, generated fresh into a package of its own: (srpc module, messages)."""
    root = tmp_path_factory.mktemp("e2e")
    files = generate(Request(str(REPO / "tests/meshgen/protos/srpc_test.proto")))
    write_files(str(root / "meshgen_e2e_app"), files)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield (
            importlib.import_module("meshgen_e2e_app.srpc_test_srpc"),
            importlib.import_module("meshgen_e2e_app.sgnl24.TestRpc"),
        )


async def test_mesh_servers_and_client(
    app: tuple[ModuleType, ModuleType], redis_settings: RedisSettings
) -> None:
    srpc, m = app
    notices: list[tuple[str, dict[str, Any], int]] = []
    notified: list[str] = []

    class Server(srpc.SrpcTestMeshSrpcServer):
        async def handle_u_echo(self, stream: Any, request: Any) -> Any:
            return m.UEchoResponse(message=f"echo:{request.message}")

        async def handle_u_complex(self, stream: Any, request: Any) -> Any:
            return m.UComplexResponse(result=request.string_field, count=len(request.array_field))

        async def on_broadcast_server_notice(self, data: dict[str, Any], sender: int) -> None:
            notices.append((self.label, data, sender))

    class Client(srpc.SrpcTestSrpcClient):
        async def handle_d_notify(self, request: Any) -> Any:
            notified.append(request.notification)
            return m.DNotifyResponse(acknowledged=request.notification == "hi")

    nodes: list[MeshSrpcServer[Any, Any, Any]] = []
    for label in ("a", "b"):
        node = Server(mesh_key="e2e", redis=redis_settings, allow_unsigned=True, **FAST)
        node.label = label
        await node.listen("127.0.0.1", 0)
        await node.mesh_start()
        nodes.append(node)
    a, b = nodes
    client = Client(f"ws://127.0.0.1:{a.port}/srpc", "alice")
    try:
        await client.connect()

        # upstream: the client invokes, the overridden handlers answer
        echoed = await client.invoke_u_echo(m.UEchoRequest(message="x"))
        assert isinstance(echoed, m.UEchoResponse) and echoed.message == "echo:x"
        counted = await client.invoke(
            "uComplex", m.UComplexRequest(string_field="s", array_field=["1", "2"])
        )
        assert (counted.result, counted.count) == ("s", 2)
        # a stub that is not overridden is not registered: the runtime names the prefix
        with pytest.raises(SrpcError, match="uSlow"):
            await client.invoke_u_slow(m.USlowRequest(delay_ms=1), timeout=2.0)

        # downstream: by stream on the node that holds the client...
        stream = a.streams_by_client_id["alice"]
        reply = await a.invoke_d_notify(stream, m.DNotifyRequest(notification="hi"))
        assert isinstance(reply, m.DNotifyResponse) and reply.acknowledged
        # ...and by client id from the other node, through the mesh
        await eventually(lambda: b.client_registry.get_client("alice"))
        reply = await b.invoke("alice", "dNotify", m.DNotifyRequest(notification="no"), timeout=2.0)
        assert reply.acknowledged is False
        assert notified == ["hi", "no"]
        with pytest.raises(Exception, match="dCompute"):  # the client did not override it
            await a.invoke_d_compute(stream, m.DComputeRequest(number=1), timeout=2.0)

        # a wrong request class fails before anything is sent
        with pytest.raises(TypeError, match="DNotifyRequest"):
            await b.invoke_d_notify("alice", m.DComputeRequest(number=1))
        with pytest.raises(TypeError, match="UEchoRequest"):
            await client.invoke("uEcho", m.UComplexRequest())
        with pytest.raises(ValueError, match="unknown downstream call 'dNope'"):
            await a.invoke(stream, "dNope", m.DNotifyRequest())
        assert notified == ["hi", "no"]

        # broadcasts: from b, to every node (b too, skip_self is False)
        await b.broadcast_server_notice({"text": "maintenance", "sentAtMs": 5})
        await eventually(lambda: len(notices) == 2)
        assert sorted(n[0] for n in notices) == ["a", "b"]
        assert {n[2] for n in notices} == {b.mesh_instance_id}
        assert all(n[1] == {"text": "maintenance", "sentAtMs": 5} for n in notices)
        await a.broadcast("serverNotice", {"text": "again", "sentAtMs": 6}, skip_self=True)
        await eventually(lambda: len(notices) == 3)
        assert notices[2][0] == "b"
    finally:
        await client.disconnect()
        for node in reversed(nodes):
            await node.mesh_stop()
            await node.close()


async def test_single_process_server_and_client(app: tuple[ModuleType, ModuleType]) -> None:
    srpc, m = app

    class Server(srpc.SrpcTestSrpcServer):
        async def handle_u_echo(self, stream: Any, request: Any) -> Any:
            return m.UEchoResponse(message=request.message.upper())

    class Client(srpc.SrpcTestSrpcClient):
        async def handle_d_compute(self, request: Any) -> Any:
            return m.DComputeResponse(result=request.number * 2)

    server = Server(allow_unsigned=True)
    await server.listen("127.0.0.1", 0)
    client = Client(f"ws://127.0.0.1:{server.port}/srpc", "bob")
    try:
        await client.connect()
        assert (await client.invoke_u_echo(m.UEchoRequest(message="hi"))).message == "HI"
        await eventually(lambda: "bob" in server.streams_by_client_id)
        stream = server.streams_by_client_id["bob"]
        assert (await server.invoke_d_compute(stream, m.DComputeRequest(number=21))).result == 42
        assert (await server.invoke(stream, "dCompute", m.DComputeRequest(number=2))).result == 4
        with pytest.raises(TypeError, match="DComputeRequest"):
            await server.invoke_d_compute(stream, m.DNotifyRequest())
    finally:
        await client.disconnect()
        await server.close()
