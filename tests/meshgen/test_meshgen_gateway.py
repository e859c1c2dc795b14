"""meshgen --gateway: the gateway's .proto, grpclib stubs and implementation, opt-in."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from meshgen.generate import Request, generate
from meshgen_helpers import Run, app_proto, generated


def test_gateway_is_opt_in(in_repo: Path) -> None:
    plain = generated("srpc_test")
    assert not [path for path in plain if "gateway" in path]
    assert "serve_gateway" not in plain["srpc_test_srpc.py"]
    assert "grpclib" not in "".join(plain.values())


def test_gateway_files_sit_next_to_the_generated_code(in_repo: Path) -> None:
    files = generated("srpc_test_gateway")
    for path in (
        "srpc_test_gateway.proto",
        "srpc_test_gateway.py",
        "sgnl24/TestRpc/gateway/__init__.py",
    ):
        assert path in files
    assert "async def serve_gateway(" in files["srpc_test_srpc.py"]


def test_gateway_proto_has_an_rpc_per_downstream_call_and_broadcast(in_repo: Path) -> None:
    proto = generated("srpc_test_gateway")["srpc_test_gateway.proto"]
    assert "package sgnl24.TestRpc.gateway;" in proto
    assert 'import "srpc_test.proto";' in proto
    assert "service SrpcTestGateway {" in proto
    for rpc in (
        "rpc DNotify(DNotifyGatewayRequest) returns (.sgnl24.TestRpc.DNotifyResponse);",
        "rpc DCompute(DComputeGatewayRequest) returns (.sgnl24.TestRpc.DComputeResponse);",
        "rpc BroadcastRoomClosed(RoomClosedBroadcastRequest) returns (google.protobuf.Empty);",
        "rpc ListClients(ListClientsRequest) returns (stream ClientInfo);",
        "rpc WatchPresence(WatchPresenceRequest) returns (stream PresenceEvent);",
    ):
        assert rpc in proto, rpc
    # The client's metadata is the app's ClientMeta, typed.
    assert ".sgnl24.TestRpc.ClientMeta metadata = 4;" in proto


def test_python_code_has_the_grpclib_base_stub_and_implementation(in_repo: Path) -> None:
    files = generated("srpc_test_gateway")
    stubs = files["sgnl24/TestRpc/gateway/__init__.py"]
    assert "class SrpcTestGatewayStub(betterproto2_grpclib.ServiceStub):" in stubs
    assert "class SrpcTestGatewayBase(betterproto2_grpclib.ServiceBase):" in stubs
    implementation = files["srpc_test_gateway.py"]
    assert "class SrpcTestGateway(_gateway.SrpcTestGatewayBase):" in implementation
    assert "self._server.invoke_d_notify," in implementation


def test_app_without_client_meta_lists_metadata_as_a_struct(in_repo: Path, tmp_path: Path) -> None:
    proto = tmp_path / "plain.proto"
    proto.write_text(
        app_proto("    EchoResponse dPingResponse = 2000;", "    EchoRequest dPingRequest = 2000;")
    )
    files = generate(Request(str(proto), gateway=True))
    text = files["plain_gateway.proto"]
    assert "google.protobuf.Struct metadata = 4;" in text
    assert "rpc DPing(DPingGatewayRequest) returns (.demo.App.EchoResponse);" in text


def test_rpc_name_clash_is_reported(meshgen: Callable[..., Run], tmp_path: Path) -> None:
    proto = tmp_path / "clash.proto"
    proto.write_text(
        app_proto(
            "    EchoResponse listClientsResponse = 2000;",
            "    EchoRequest listClientsRequest = 2000;",
        )
    )
    run = meshgen(str(proto), "-o", str(tmp_path / "out"), "--gateway")
    assert run.code == 2
    assert "listClients and ListClients both become the gateway rpc ListClients" in run.err
    assert not (tmp_path / "out").exists()


def test_generated_server_imports_without_grpclib(in_repo: Path) -> None:
    # grpclib is the optional `gateway` extra: only serving the gateway needs it.
    code = (
        "import sys; sys.modules['grpclib'] = None; sys.path.insert(0, 'tests/golden'); "
        "import meshsrpc, srpc_test_gateway.srpc_test_srpc as m; "
        "assert hasattr(m.SrpcTestMeshSrpcServer, 'serve_gateway')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
