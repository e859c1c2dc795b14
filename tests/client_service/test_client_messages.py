"""The forwarding messages of WIRE.md §3 (meshsrpc.client_messages), built and read alone."""

from __future__ import annotations

from typing import Any

import pytest
from meshsrpc import client_messages as messages
from meshsrpc.errors import ClientDisconnectedError, ClientInvocationError
from meshsrpc.mesh_messages import MAX_TIMEOUT_MS


def test_forward_carries_timeout_ms_only_when_the_caller_gave_one() -> None:
    assert messages.forward("c1", "dNotify", {"a": 1}, None) == {
        "clientId": "c1",
        "type": "dNotify",
        "data": {"a": 1},
    }
    assert messages.forward("c1", "dNotify", None, 0.0001)["timeoutMs"] == 1
    assert messages.forward("c1", "dNotify", None, 2.5)["timeoutMs"] == 2500


def test_a_forward_request_reads_back() -> None:
    parsed = messages.parse_forward(messages.forward("c1", "dNotify", {"a": 1}, 2.0))
    assert parsed == messages.Forward("c1", "dNotify", {"a": 1}, 2000)


@pytest.mark.parametrize("timeout", [True, "5", float("nan"), None, 0, -5])
def test_a_forward_timeout_that_is_not_a_positive_number_is_ignored(timeout: Any) -> None:
    parsed = messages.parse_forward({"clientId": "c1", "type": "t", "timeoutMs": timeout})
    assert parsed is not None and parsed.timeout_ms is None


@pytest.mark.parametrize("timeout", [float("inf"), 10**400])
def test_a_forward_timeout_beyond_the_maximum_is_clamped(timeout: Any) -> None:
    parsed = messages.parse_forward({"clientId": "c1", "type": "t", "timeoutMs": timeout})
    assert parsed is not None and parsed.timeout_ms == MAX_TIMEOUT_MS


@pytest.mark.parametrize(
    "data", [None, [], {"type": "t"}, {"clientId": 1, "type": "t"}, {"clientId": "c1"}]
)
def test_a_malformed_forward_request_reads_as_none(data: Any) -> None:
    assert messages.parse_forward(data) is None


def test_a_forward_reply_gives_the_data() -> None:
    assert messages.parse_forward_reply(messages.forward_reply({"ok": 1}), 2, "c1") == {"ok": 1}


def test_a_disconnected_client_travels_by_error_name() -> None:
    reply = messages.forward_error(ClientDisconnectedError("c1"))
    assert reply["errorName"] == "ClientDisconnectedError"
    with pytest.raises(ClientDisconnectedError):
        messages.parse_forward_reply(reply, 2, "c1")


def test_other_failures_become_client_invocation_errors() -> None:
    reply = messages.forward_error(ValueError("bad"))
    assert reply == {"error": "bad", "errorName": "ValueError"}
    with pytest.raises(ClientInvocationError, match="bad"):
        messages.parse_forward_reply(reply, 2, "c1")
    with pytest.raises(ClientInvocationError, match="malformed"):
        messages.parse_forward_reply("nope", 2, "c1")


def test_kick_client_round_trip() -> None:
    assert messages.parse_kick_client(messages.kick_client("c1")) == "c1"
    assert messages.parse_kick_client({"clientId": 3}) is None
    assert messages.kick_reply(True) == {"kicked": True}


def test_update_meta_round_trip() -> None:
    request = messages.update_meta("c1", {"s": 1})
    assert request == {"clientId": "c1", "metadata": {"s": 1}}
    assert messages.parse_update_meta(request) == messages.UpdateMeta("c1", {"s": 1})
    assert messages.parse_update_meta("x") is None
    assert messages.parse_update_meta_reply(messages.update_meta_reply(True)) is True
    assert messages.parse_update_meta_reply({"updated": 1}) is False
