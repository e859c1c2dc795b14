"""The hand-written envelope codec writes and reads exactly what betterproto2 does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshsrpc.srpc.frames import Frame, FrameError, FrameSchema
from meshsrpc.srpc.protowire import encode_varint

from tests.generated.sgnl24.TestRpc import (
    ByteStreamOperation,
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    PingPong,
    ServerMessage,
    TraceContext,
    UComplexRequest,
    UEchoRequest,
    UEchoResponse,
    WriteByteStream,
)

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "tests" / "protos" / "srpc-frames.json").read_text()
)
CONTAINERS: dict[str, type[betterproto2.Message]] = {
    "ClientMessage": ClientMessage,
    "ServerMessage": ServerMessage,
}

# Inner values per oneof member (all-default ones included: they are still present).
CLIENT_MEMBERS: dict[str, list[betterproto2.Message]] = {
    "ping_pong": [PingPong()],
    "byte_stream_operation": [
        ByteStreamOperation(stream_id=3, write=WriteByteStream(chunk=b"\x00\x01")),
        ByteStreamOperation(),
    ],
    "u_echo_request": [UEchoRequest(message="héllo"), UEchoRequest()],
    "u_complex_request": [
        UComplexRequest(string_field="x", int_field=-5, array_field=["a"], map_field={"k": "v"})
    ],
    "d_notify_response": [DNotifyResponse(acknowledged=True), DNotifyResponse()],
}
SERVER_MEMBERS: dict[str, list[betterproto2.Message]] = {
    "ping_pong": [PingPong()],
    "u_echo_response": [UEchoResponse(message="Echo: x" * 40), UEchoResponse()],
    "d_notify_request": [DNotifyRequest(notification="n")],
}


def _generic(container: type[betterproto2.Message]) -> FrameSchema[Any]:
    schema = FrameSchema(container)
    schema._members_by_number = None  # the betterproto2 path
    return schema


def _same(a: Frame, b: Frame) -> bool:
    return (a.request_id, a.reply, a.error, a.user_error, a.trace, a.member, a.value) == (
        b.request_id,
        b.reply,
        b.error,
        b.user_error,
        b.trace,
        b.member,
        b.value,
    )


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_vectors_decode_and_reencode_the_same_both_ways(vector: dict[str, Any]) -> None:
    container = CONTAINERS[vector["type"]]
    data = bytes.fromhex(vector["hex"])
    fast, generic = FrameSchema(container), _generic(container)
    frame = fast.decode(data)
    assert _same(frame, generic.decode(data))
    for sent in vector.get("hexAsSentByUpstreamSrpc", {}).values():
        assert _same(fast.decode(bytes.fromhex(sent)), generic.decode(bytes.fromhex(sent)))
    again = fast.encode(
        request_id=frame.request_id,
        reply=frame.reply,
        error=frame.error,
        user_error=frame.user_error,
        trace=frame.trace,
        member=frame.member or None,
        value=frame.value,
    )
    assert again.hex() == vector["hex"]


def _envelopes(members: dict[str, list[betterproto2.Message]]) -> Any:
    member = st.sampled_from([None, *members]).flatmap(
        lambda name: st.tuples(
            st.just(name), st.sampled_from(members[name]) if name else st.just(None)
        )
    )
    trace = st.none() | st.builds(
        TraceContext,
        trace_id=st.text(max_size=32),
        span_id=st.text(max_size=16),
        trace_flags=st.integers(-(2**31), 2**31 - 1),
    )
    return st.fixed_dictionaries(
        {
            "request_id": st.text(max_size=200),
            "reply": st.booleans(),
            "error": st.none() | st.text(max_size=200),
            "user_error": st.none() | st.booleans(),
            "trace": trace,
            "member": member,
        }
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["ClientMessage", "ServerMessage"]), st.data())
def test_encode_matches_betterproto2_and_decodes_back(name: str, data: st.DataObject) -> None:
    container = CONTAINERS[name]
    members = CLIENT_MEMBERS if name == "ClientMessage" else SERVER_MEMBERS
    fields = data.draw(_envelopes(members))
    member, value = fields.pop("member")
    kwargs = {k: v for k, v in fields.items() if v is not None}
    if member is not None:
        kwargs[member] = value
    expected = bytes(container(**kwargs))
    schema = FrameSchema(container)
    assert schema.encode(**fields, member=member, value=value) == expected
    frame = schema.decode(expected)
    assert _same(frame, _generic(container).decode(expected))
    assert (frame.member or None, frame.value) == (member, value)


_FIELD = st.one_of(
    # requestId / error as strings, reply / userError as varints, trace as a message
    st.text(max_size=20).map(lambda s: b"\x0a" + encode_varint(len(s.encode())) + s.encode()),
    st.integers(0, 2**64 - 1).map(lambda v: b"\x10" + encode_varint(v)),
    st.text(max_size=20).map(lambda s: b"\x1a" + encode_varint(len(s.encode())) + s.encode()),
    st.integers(0, 1).map(lambda v: b"\x20" + encode_varint(v)),
    st.just(bytes(TraceContext(trace_id="t", trace_flags=1))).map(
        lambda b: b"\x2a" + encode_varint(len(b)) + b
    ),
    # one oneof member (uEchoRequest = 1000), repeated occurrences keep the last
    st.text(max_size=20).map(
        lambda s: b"\xc2\x3e" + encode_varint(len(bytes(UEchoRequest(message=s))))
        + bytes(UEchoRequest(message=s))
    ),
    # unknown fields of every wire type
    st.binary(max_size=8).map(lambda b: b"\xba\x01" + encode_varint(len(b)) + b),
    st.integers(0, 2**32).map(lambda v: b"\xb8\x01" + encode_varint(v)),
    st.binary(min_size=8, max_size=8).map(lambda b: b"\xb9\x01" + b),
    st.binary(min_size=4, max_size=4).map(lambda b: b"\xbd\x01" + b),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_FIELD, max_size=8))
def test_decode_matches_betterproto2_on_any_field_sequence(fields: list[bytes]) -> None:
    data = b"".join(fields)
    assert _same(FrameSchema(ClientMessage).decode(data), _generic(ClientMessage).decode(data))


def test_known_field_with_a_foreign_wire_type_is_skipped_like_ts_proto() -> None:
    schema = FrameSchema(ClientMessage)
    # requestId as a varint, then uEchoRequest
    frame = schema.decode(
        bytes.fromhex("0805") + bytes(ClientMessage(u_echo_request=UEchoRequest()))
    )
    assert frame.request_id == "" and frame.member == "u_echo_request"


@pytest.mark.parametrize(
    "hex_frame",
    ["920300c23e030a0161", "c23e00920300", "0a0161920300827d00"],
)
def test_two_different_members_are_rejected(hex_frame: str) -> None:
    with pytest.raises(FrameError):
        FrameSchema(ClientMessage).decode(bytes.fromhex(hex_frame))


@pytest.mark.parametrize("hex_frame", ["0aff", "1a02c328", "2a03", "c23e0412020a"])
def test_broken_envelope_fields_are_rejected(hex_frame: str) -> None:
    with pytest.raises(FrameError):
        FrameSchema(ClientMessage).decode(bytes.fromhex(hex_frame))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ClientMessage", "ServerMessage"]), st.text(max_size=40), st.data())
def test_encode_reply_writes_what_encode_does(name: str, request_id: str, data: Any) -> None:
    container = CONTAINERS[name]
    members = CLIENT_MEMBERS if name == "ClientMessage" else SERVER_MEMBERS
    member = data.draw(st.sampled_from(sorted(members)))
    value = data.draw(st.sampled_from(members[member]))
    for schema in (FrameSchema(container), _generic(container)):
        expected = schema.encode(request_id=request_id, reply=True, member=member, value=value)
        assert schema.encode_reply(request_id, member, value) == expected


def test_encode_reply_refuses_an_unknown_member_like_encode() -> None:
    with pytest.raises(TypeError):
        FrameSchema(ServerMessage).encode_reply("1", "no_such_member", UEchoResponse())
