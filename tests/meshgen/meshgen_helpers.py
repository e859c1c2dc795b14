"""Constants and small helpers shared by meshgen's tests."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from meshgen.generate import Request, generate

REPO = Path(__file__).resolve().parents[2]
PROTOS = "tests/meshgen/protos"
INCLUDE = f"{PROTOS}/include"

# (golden folder, meshgen arguments) — the same commands as `make golden`.
GOLDEN_CASES = {
    "srpc_test": [f"{PROTOS}/srpc_test.proto"],
    "lobby": [f"{PROTOS}/lobby.proto", "-I", INCLUDE],
    # The same apps with their gRPC gateway.
    "srpc_test_gateway": [f"{PROTOS}/srpc_test.proto", "--gateway"],
    "lobby_gateway": [f"{PROTOS}/lobby.proto", "-I", INCLUDE, "--gateway"],
}


def golden_request(case: str) -> Request:
    """The Request `make golden` runs for a case."""
    args = GOLDEN_CASES[case]
    includes = tuple(args[i + 1] for i, a in enumerate(args) if a == "-I")
    return Request(args[0], includes, gateway="--gateway" in args)


@functools.cache
def generated(case: str) -> dict[str, str]:
    """The files meshgen generates for a golden case (from the repo root), computed once."""
    assert os.getcwd() == str(REPO), "run from the repo root (fixture in_repo)"
    return generate(golden_request(case))


@dataclass
class Run:
    """The outcome of one meshgen command."""

    code: int
    out: str
    err: str


FRAMEWORK_MESSAGES = """\
message PingPong {}
message WriteByteStream { bytes chunk = 1; }
message FinishByteStream {}
message DestroyByteStream { optional string error = 1; }
message ByteStreamOperation {
  int32 streamId = 1;
  oneof operation {
    WriteByteStream write = 2;
    FinishByteStream finish = 3;
    DestroyByteStream destroy = 4;
  }
}
message TraceContext { string traceId = 1; string spanId = 2; int32 traceFlags = 3; }
"""

FRAMEWORK_FIELDS = """\
  string requestId = 1;
  bool reply = 2;
  optional string error = 3;
  optional bool userError = 4;
  optional TraceContext trace = 5;
"""


def app_proto(
    client: str,
    server: str,
    extra: str = "",
    *,
    package: str = "demo.App",
    client_name: str = "ClientMessage",
    server_name: str = "ServerMessage",
    framework: str = FRAMEWORK_FIELDS,
) -> str:
    """A small app proto: the framework, `extra` messages, and the two containers."""
    return f"""\
syntax = "proto3";
package {package};

{FRAMEWORK_MESSAGES}
message EchoRequest {{ string text = 1; }}
message EchoResponse {{ string text = 1; }}
{extra}
message {client_name} {{
{framework}
  oneof request {{
    PingPong pingPong = 50;
    ByteStreamOperation byteStreamOperation = 51;
{client}
  }}
}}

message {server_name} {{
{framework}
  oneof response {{
    PingPong pingPong = 50;
    ByteStreamOperation byteStreamOperation = 51;
{server}
  }}
}}
"""


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line containing needle."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the proto")
