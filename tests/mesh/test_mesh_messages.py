"""The mesh's JSON messages alone: the capture's bytes, and what parsing accepts."""

from __future__ import annotations

import pytest
from meshsrpc import MeshHandlerError, MeshNoHandlerError
from meshsrpc import mesh_messages as messages

RID = "be3967eb-c0f4-444b-92dc-99867a0852c8"


def test_request_bytes_match_the_capture() -> None:
    data = {"clientId": "c1", "type": "dNotify", "data": {"notification": "hello from A"}}
    assert messages.request(RID, 1, "forward", data, 10000) == (
        b'{"requestId":"be3967eb-c0f4-444b-92dc-99867a0852c8","senderInstanceId":1,'
        b'"type":"forward","data":{"clientId":"c1","type":"dNotify","data":'
        b'{"notification":"hello from A"}},"timeoutMs":10000}'
    )


def test_reply_heartbeat_error_and_broadcast_bytes_match_the_capture() -> None:
    assert messages.reply(RID, {"data": {"acknowledged": True}}) == (
        b'{"requestId":"' + RID.encode() + b'","reply":true,"data":{"data":{"acknowledged":true}}}'
    )
    assert (
        messages.request_heartbeat(RID) == b'{"requestId":"' + RID.encode() + b'","heartbeat":true}'
    )
    assert messages.no_handler_reply("injected-1", "noSuchType") == (
        b'{"requestId":"injected-1","reply":true,"error":"MESH_NO_HANDLER:noSuchType"}'
    )
    assert messages.broadcast(1, "hello", {"msg": "hi", "n": 1}) == (
        b'{"broadcast":true,"senderInstanceId":1,"type":"hello","data":{"msg":"hi","n":1}}'
    )


def test_encoding_is_like_json_stringify() -> None:
    assert messages.encode({"path": "/p/q", "note": 'a "q" é'}) == (
        b'{"path":"/p/q","note":"a \\"q\\" \xc3\xa9"}'
    )
    with pytest.raises(ValueError):
        messages.encode({"x": float("nan")})


def test_data_that_is_not_json_raises_and_the_next_message_still_encodes() -> None:
    circular: dict[str, object] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        messages.encode({"data": circular})
    with pytest.raises(TypeError, match="not JSON serializable"):
        messages.encode({"data": {"a": object()}})
    with pytest.raises(ValueError):
        messages.encode({"data": [float("inf")]})
    # The encoder is built once: nothing of a failed message stays in it.
    assert messages.encode({"data": circular["self"] is circular}) == b'{"data":true}'


def test_inbox_messages_are_told_apart_by_field() -> None:
    heartbeat = messages.parse_inbox(b'{"requestId":"r","heartbeat":true,"reply":true}')
    assert heartbeat == messages.RequestHeartbeat("r")
    assert messages.parse_inbox(b'{"requestId":"r","reply":true}') == messages.Reply(
        "r", None, None
    )
    assert messages.parse_inbox(b'{"requestId":"r","reply":true,"error":"x"}').error == "x"  # type: ignore[union-attr]
    request = messages.parse_inbox(b'{"requestId":"r","senderInstanceId":3,"type":"t","data":[1]}')
    assert request == messages.Request("r", 3, "t", [1], None)


@pytest.mark.parametrize("timeout", ["0", "-5", '"10"', "true", "null"])
def test_a_request_without_a_usable_timeout_gets_none(timeout: str) -> None:
    payload = '{"requestId":"r","senderInstanceId":3,"type":"t","timeoutMs":' + timeout + "}"
    assert messages.parse_inbox(payload.encode()).timeout_ms is None  # type: ignore[union-attr]


def test_reply_errors_become_the_right_exception() -> None:
    no_handler = messages.reply_error("MESH_NO_HANDLER:noSuchType")
    assert isinstance(no_handler, MeshNoHandlerError) and no_handler.type == "noSuchType"
    failed = messages.reply_error("boom")
    assert isinstance(failed, MeshHandlerError) and failed.message == "boom"


@pytest.mark.parametrize(
    "payload",
    [b'{"broadcast":true,"type":"t"}', b'{"senderInstanceId":1,"type":"t"}', b"[]", b"{"],
)
def test_invalid_broadcasts_are_rejected(payload: bytes) -> None:
    with pytest.raises(messages.InvalidMessage):
        messages.parse_broadcast(payload)
