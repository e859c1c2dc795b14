"""Codec: ClientMessage decode and ServerMessage encode, betterproto2 vs google.protobuf (upb).

The google.protobuf classes are generated from the same srpc_test.proto into a
temporary directory with grpc_tools.protoc at bench time.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import wire
from .runner import BenchResult, Child, ChildChannel, NotAvailable, Profile, children, times

NAME = "codec"
TITLE = "Codec (frames/s)"
ROOT = Path(__file__).resolve().parent.parent
PROTO_CANDIDATES = [
    ROOT / "tests" / "protos" / "srpc_test.proto",
    ROOT.parent / "shared" / "vectors" / "srpc_test.proto",
]
REQUEST_ID = "0190a4b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b"
MESSAGE = "hello from the meshsrpc benchmark, 64 bytes of payload text....."


def generate_pb2(target_dir: str) -> Any:
    """Compile srpc_test.proto to google.protobuf classes in ``target_dir`` and import them."""
    proto = next((p for p in PROTO_CANDIDATES if p.exists()), None)
    if proto is None:
        raise NotAvailable("srpc_test.proto not found")
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise NotAvailable(f"grpcio-tools missing ({exc})") from exc
    code = protoc.main(["protoc", f"-I{proto.parent}", f"--python_out={target_dir}", str(proto)])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    sys.path.insert(0, target_dir)
    return importlib.import_module("srpc_test_pb2")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (batches of 200)."""
    for _ in range(200):
        fn()
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            fn()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


async def measure(channel: ChildChannel, seconds: float) -> None:
    """Child process: frames/s of both codecs, interleaved."""
    proto = wire.test_proto()
    with tempfile.TemporaryDirectory(prefix="meshsrpc-bench-pb2-") as tmp:
        pb2 = generate_pb2(tmp)
        frame = bytes(
            proto.ClientMessage(
                request_id=REQUEST_ID, u_echo_request=proto.UEchoRequest(message=MESSAGE)
            )
        )
        # The same bytes must decode to the same request in both.
        assert pb2.ClientMessage.FromString(frame).uEchoRequest.message == MESSAGE

        def bp_decode() -> object:
            return proto.ClientMessage.parse(frame)

        def pb_decode() -> object:
            return pb2.ClientMessage.FromString(frame)

        def bp_encode() -> bytes:
            return bytes(
                proto.ServerMessage(
                    request_id=REQUEST_ID,
                    reply=True,
                    u_echo_response=proto.UEchoResponse(message=MESSAGE),
                )
            )

        # What an SrpcServer does per request: its FrameSchema hand-codes the
        # container envelope and leaves the inner message to betterproto2.
        srpc_codec: dict[str, Callable[[], object]] = {}
        try:
            from meshsrpc.srpc.frames import FrameSchema
        except ImportError:  # no frame codec in this meshsrpc: only the raw figures
            pass
        else:
            client_schema = FrameSchema(proto.ClientMessage)
            server_schema = FrameSchema(proto.ServerMessage)

            def srpc_decode() -> object:
                return client_schema.decode(frame)

            def srpc_encode() -> bytes:
                return server_schema.encode(
                    request_id=REQUEST_ID,
                    reply=True,
                    member="u_echo_response",
                    value=proto.UEchoResponse(message=MESSAGE),
                )

            srpc_codec = {"srpc_decode": srpc_decode, "srpc_encode": srpc_encode}

        def pb_encode() -> bytes:
            return pb2.ServerMessage(
                requestId=REQUEST_ID, reply=True, uEchoResponse=pb2.UEchoResponse(message=MESSAGE)
            ).SerializeToString()

        assert bp_encode() == pb_encode()
        if srpc_codec:
            assert srpc_codec["srpc_encode"]() == pb_encode()
        from google.protobuf.internal import api_implementation

        out: dict[str, Any] = {"protobuf_backend": api_implementation.Type()}
        for key, fn in (
            ("bp_decode", bp_decode),
            ("pb_decode", pb_decode),
            ("bp_encode", bp_encode),
            ("pb_encode", pb_encode),
            *srpc_codec.items(),
        ):
            out[key] = rate(fn, seconds)
            channel.progress(f"{key}: {out[key]:,.0f} frames/s")
        channel.send(out)


def run(profile: Profile) -> BenchResult:
    """One pinned child measures both codecs."""
    result = BenchResult(NAME, TITLE)
    with children(Child("codec", measure, role="load", seconds=profile.codec_duration)) as (c,):
        out = c.recv(profile.ready_timeout + 8 * profile.codec_duration + 30)
    base = f"google.protobuf ({out['protobuf_backend']})"
    decode = result.figure(
        "ClientMessage decode (uEchoRequest)",
        out["bp_decode"],
        "frames/s",
        baseline=out["pb_decode"],
        baseline_name=base,
    )
    encode = result.figure(
        "ServerMessage encode (uEchoResponse reply, incl. construction)",
        out["bp_encode"],
        "frames/s",
        baseline=out["pb_encode"],
        baseline_name=base,
    )
    detail = f"decode {times(decode['ratio'])}, encode {times(encode['ratio'])}"
    if "srpc_decode" in out:
        srpc_decode = result.figure(
            "ClientMessage decode (uEchoRequest), meshsrpc FrameSchema",
            out["srpc_decode"],
            "frames/s",
            baseline=out["pb_decode"],
            baseline_name=base,
        )
        srpc_encode = result.figure(
            "ServerMessage encode (uEchoResponse reply, incl. construction), meshsrpc FrameSchema",
            out["srpc_encode"],
            "frames/s",
            baseline=out["pb_encode"],
            baseline_name=base,
        )
        detail += (
            f"; FrameSchema (what SrpcServer runs) decode {times(srpc_decode['ratio'])}, "
            f"encode {times(srpc_encode['ratio'])}"
        )
    result.target("report the betterproto2 / upb ratio", None, detail)
    return result
