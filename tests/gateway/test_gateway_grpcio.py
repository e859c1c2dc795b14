"""A second, independent gRPC implementation calls the grpclib-served gateway.

grpc_tools.protoc compiles the emitted srpc_test_gateway.proto (with the app's proto on
the include path) for grpcio; a separate process then calls the gateway with it. This
proves the .proto is standard gRPC, not Python- or grpclib-specific.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import sys
from pathlib import Path

from grpc_tools import protoc

from tests.gateway.conftest import Mesh

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def compile_for_grpcio(out: Path) -> None:
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{REPO / 'tests' / 'golden' / 'srpc_test_gateway'}",
            f"-I{REPO / 'tests' / 'meshgen' / 'protos'}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "srpc_test_gateway.proto",
            "srpc_test.proto",
        ]
    )
    assert code == 0


async def test_grpcio_client_from_the_emitted_proto_calls_the_gateway(
    mesh: Mesh, tmp_path: Path
) -> None:
    compile_for_grpcio(tmp_path)
    await mesh.connect(mesh.b, "bob", client_meta={"displayName": "Bob"})
    caller = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "grpcio_caller.py"),
        str(tmp_path),
        str(mesh.gateway.port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await caller.communicate()
    finally:
        if caller.returncode is None:
            caller.kill()
            await caller.wait()
    assert caller.returncode == 0, err.decode()
    results = json.loads(out)
    # Whichever side noticed the deadline first wrote the held call's details.
    assert results.pop("held")[0] == "DEADLINE_EXCEEDED"
    assert results == {
        "result": 42,
        "malformed": "INVALID_ARGUMENT",
        "unknown": "NOT_FOUND",
        "failed": ["ABORTED", "cannot compute 1"],
        "clients": [["bob", "Bob"]],
    }
