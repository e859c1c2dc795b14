"""The frame codec against the TypeScript vectors, and the sans-I/O protocol rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshsrpc.srpc.frames import FrameError, FrameSchema
from meshsrpc.srpc.ids import uuid7
from meshsrpc.srpc.protocol import (
    ByteStreamReceived,
    PingReceived,
    ProtocolViolation,
    ReplyReceived,
    RequestReceived,
    SrpcProtocol,
    cause_for_close_code,
    truncate_reason,
)
from meshsrpc.srpc.stream import StreamMeta

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
)

# The protocol reads no clock: every frame is received at these times.
NOW = 100.0
EPOCH_MS = 1_700_000_000_000
VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "tests" / "protos" / "srpc-frames.json").read_text()
)
CONTAINERS: dict[str, type[betterproto2.Message]] = {
    "ClientMessage": ClientMessage,
    "ServerMessage": ServerMessage,
}


def _vector_ids() -> list[str]:
    return [v["name"] for v in VECTORS["vectors"]]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_ids())
def test_vector_decodes_to_its_json_and_reencodes(vector: dict[str, Any]) -> None:
    cls = CONTAINERS[vector["type"]]
    data = bytes.fromhex(vector["hex"])
    FrameSchema(cls).decode(data)  # validates
    assert cls.parse(data).to_dict() == vector["json"]
    assert bytes(cls.from_dict(vector["json"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_ids())
def test_upstream_forms_are_accepted(vector: dict[str, Any]) -> None:
    cls = CONTAINERS[vector["type"]]
    schema = FrameSchema(cls)
    canonical = schema.decode(bytes.fromhex(vector["hex"]))
    for sent in vector.get("hexAsSentByUpstreamSrpc", {}).values():
        frame = schema.decode(bytes.fromhex(sent))
        assert frame.member == canonical.member
        assert frame.value == canonical.value
        assert frame.reply == canonical.reply


@pytest.mark.parametrize("hex_frame", ["0a001000920300", "0a09756e646566696e65641000920300"])
def test_upstream_ping_with_request_id_is_a_ping(hex_frame: str) -> None:
    protocol = SrpcProtocol(FrameSchema(ClientMessage), FrameSchema(ServerMessage))
    assert protocol.receive(bytes.fromhex(hex_frame), NOW, EPOCH_MS) == [PingReceived()]
    assert protocol.last_ping_at is not None


@pytest.mark.parametrize(
    "hex_frame",
    [
        "0a056d",  # requestId says 5 bytes, 1 present
        "c23e070a0568656c",  # uEchoRequest length 7, 5 present
        "c23e030a0568",  # inner string runs past its message
        "0a",  # tag without value
        "ca3e0210",  # varint cut off inside uComplexRequest
        "0b",  # wire type 3 (group)
        "9a0306108080808010",  # byteStreamOperation.write (a message) as the varint 2**32
        "c23e020805",  # uEchoRequest.message (a string) as a varint
        "ca3e023001",  # uComplexRequest.map_field (a map) as a varint
        "ca3e0515000000c0",  # uComplexRequest.double_field as 4 bytes, not 8
    ],
)
def test_truncated_or_broken_frames_are_rejected(hex_frame: str) -> None:
    with pytest.raises(FrameError):
        FrameSchema(ClientMessage).decode(bytes.fromhex(hex_frame))


def test_two_oneof_members_are_rejected() -> None:
    with pytest.raises(FrameError):
        FrameSchema(ClientMessage).decode(bytes.fromhex("920300c23e030a0161"))


def test_all_default_members_are_present() -> None:
    frame = FrameSchema(ClientMessage).decode(bytes.fromhex("0a03722d351001827d00"))
    assert frame.member == "d_notify_response"
    assert frame.value == DNotifyResponse(acknowledged=False)


def test_prefix_mapping() -> None:
    client = FrameSchema(ClientMessage)
    server = FrameSchema(ServerMessage)
    echo = client.lookup("uEcho", request=True)
    assert echo is not None and echo.attr == "u_echo_request" and echo.message_cls is UEchoRequest
    assert client.lookup("dRequestData", request=False) is not None
    assert client.lookup("dNotify", request=True) is None
    assert server.lookup("uEcho", request=False) is not None
    assert sorted(server.prefixes(request=True)) == ["dCompute", "dNotify", "dRequestData"]


def test_protocol_queues_requests_until_activation_but_not_replies() -> None:
    client, server = FrameSchema(ClientMessage), FrameSchema(ServerMessage)
    protocol = SrpcProtocol(client, server)
    call = protocol.outgoing_call("dNotify")
    request_id, frame = protocol.request(call, DNotifyRequest(notification="x"))
    assert ServerMessage.parse(frame).d_notify_request == DNotifyRequest(notification="x")
    first = bytes(ClientMessage(request_id="a", u_echo_request=UEchoRequest(message="1")))
    second = bytes(ClientMessage(request_id="b", u_echo_request=UEchoRequest(message="2")))
    assert protocol.receive(first, NOW, EPOCH_MS) == []
    assert protocol.receive(second, NOW, EPOCH_MS) == []
    reply = bytes(
        ClientMessage(request_id=request_id, reply=True, d_notify_response=DNotifyResponse())
    )
    events = protocol.receive(reply, NOW, EPOCH_MS)
    assert len(events) == 1 and isinstance(events[0], ReplyReceived)
    queued = protocol.activate()
    assert [e.request_id for e in queued] == ["a", "b"]
    assert all(isinstance(e, RequestReceived) for e in queued)
    assert queued[0].call is not None
    response = protocol.reply("a", queued[0].call, UEchoResponse(message="1"))
    assert ServerMessage.parse(response).to_dict() == {
        "requestId": "a",
        "reply": True,
        "uEchoResponse": {"message": "1"},
    }


@pytest.mark.parametrize(
    "data",
    [
        "text frame",
        bytes.fromhex("0a056d"),
        bytes(ClientMessage(request_id="nope", reply=True, d_notify_response=DNotifyResponse())),
        bytes(ClientMessage(reply=True, d_notify_response=DNotifyResponse())),
    ],
)
def test_protocol_violations(data: bytes | str) -> None:
    protocol = SrpcProtocol(FrameSchema(ClientMessage), FrameSchema(ServerMessage))
    events = protocol.receive(data, NOW, EPOCH_MS)
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)


def test_error_reply_encoding_matches_vector() -> None:
    protocol = SrpcProtocol(FrameSchema(ClientMessage), FrameSchema(ServerMessage))
    frame = protocol.error_reply("r-2", "Invalid input", user_error=True)
    assert frame.hex() == "0a03722d3210011a0d496e76616c696420696e7075742001"


def test_close_reason_and_causes() -> None:
    assert len(truncate_reason("é" * 100).encode()) <= 123
    assert truncate_reason("short") == "short"
    assert cause_for_close_code(4001) == "conflict"
    assert cause_for_close_code(4002) == "supersede"
    assert cause_for_close_code(4003) == "timeout"
    assert cause_for_close_code(4000) == "badArg"
    assert cause_for_close_code(1006) == "disconnect"


def test_uuid7_is_ordered_and_well_formed() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )


def test_stream_meta_notifies_on_every_mutation() -> None:
    changes: list[dict[str, Any]] = []
    meta = StreamMeta({"a": "1"})
    meta.on_change = lambda m: changes.append(dict(m))
    meta["b"] = 2
    del meta["a"]
    meta.update(c=3)
    meta.pop("c")
    meta.pop("missing", None)
    meta.setdefault("d", 4)
    meta |= {"e": 5}
    meta.clear()
    assert changes == [
        {"a": "1", "b": 2},
        {"b": 2},
        {"b": 2, "c": 3},
        {"b": 2},
        {"b": 2, "d": 4},
        {"b": 2, "d": 4, "e": 5},
        {},
    ]
    assert isinstance(meta, dict)


def test_late_reply_after_forget_is_dropped_but_unknown_ids_are_not() -> None:
    protocol = SrpcProtocol(FrameSchema(ClientMessage), FrameSchema(ServerMessage))
    request_id, _ = protocol.request(protocol.outgoing_call("dNotify"), DNotifyRequest())
    protocol.forget(request_id, expired=True)
    late = bytes(
        ClientMessage(request_id=request_id, reply=True, d_notify_response=DNotifyResponse())
    )
    assert protocol.receive(late, NOW, EPOCH_MS) == []
    events = protocol.receive(late, NOW, EPOCH_MS)  # a second reply to the same id is a violation
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_the_protocol(data: bytes) -> None:
    protocol = SrpcProtocol(FrameSchema(ClientMessage), FrameSchema(ServerMessage))
    protocol.activate()
    for event in protocol.receive(data, NOW, EPOCH_MS):
        assert isinstance(
            event, PingReceived | RequestReceived | ProtocolViolation | ByteStreamReceived
        )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.integers(min_value=1, max_value=60))
def test_truncating_inside_a_field_is_always_detected(message: str, cut: int) -> None:
    frame = bytes(ClientMessage(request_id="r", u_echo_request=UEchoRequest(message=message)))
    # Cutting at a field boundary leaves valid protobuf (for every parser); cut inside
    # the last field (the uEchoRequest after the 3-byte requestId).
    cut = min(cut, len(frame) - 3 - 1)
    with pytest.raises(FrameError):
        FrameSchema(ClientMessage).decode(frame[: len(frame) - cut])


@pytest.mark.parametrize(
    "name", ["uEchoRequest", "uHTTPGetRequest", "u2FAResponse", "getV2Request", "class", "u_snake"]
)
def test_prefix_fallback_follows_the_compiler_naming(name: str) -> None:
    from betterproto2_compiler.casing import safe_snake_case
    from meshsrpc.srpc.frames import _pythonize

    assert _pythonize(name) == safe_snake_case(name)
