"""SrpcClient's errors name the fix (issue 15, item 9)."""

from __future__ import annotations

import pytest
from meshsrpc import SrpcClient, SrpcConflictError, SrpcError

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
from tests.srpc._support import ClientFactory, ServerFactory

SECRET = "item9-secret"


async def test_a_refused_duplicate_says_supersede_takes_over(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret=SECRET)
    await make_client(server, "dup", client_secret=SECRET).connect()
    second = make_client(server, "dup", client_secret=SECRET, enable_reconnect=False)
    with pytest.raises(SrpcConflictError) as refused:
        await second.connect()
    assert "supersede=True" in str(refused.value)
    assert "'dup'" in str(refused.value)


def test_the_default_conflict_message_says_supersede_takes_over() -> None:
    assert "supersede=True" in str(SrpcConflictError())


def test_an_http_url_is_refused_with_srpc_error_naming_ws() -> None:
    with pytest.raises(SrpcError, match=r"ws:// or wss://.*use ws://127\.0\.0\.1:9/srpc"):
        SrpcClient("http://127.0.0.1:9/srpc", ClientMessage, ServerMessage, "c1")


def test_an_https_url_suggests_wss() -> None:
    with pytest.raises(SrpcError, match=r"use wss://example\.org/srpc"):
        SrpcClient("https://example.org/srpc", ClientMessage, ServerMessage, "c1")


async def test_a_bad_url_set_later_fails_at_connect() -> None:
    client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        "ws://127.0.0.1:9/srpc", ClientMessage, ServerMessage, "c1", client_secret=SECRET
    )
    client.url = "http://127.0.0.1:9/srpc?token=abc"
    with pytest.raises(SrpcError, match="ws:// or wss://") as refused:
        await client.connect()
    assert "token" not in str(refused.value)


async def test_an_invalid_ws_url_fails_without_the_signed_query() -> None:
    client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        "ws:///srpc", ClientMessage, ServerMessage, "c1", client_secret=SECRET
    )
    with pytest.raises(SrpcError, match="invalid URL") as refused:
        await client.connect()
    shown = [refused.value]
    if not refused.value.__suppress_context__ and refused.value.__context__ is not None:
        shown.append(refused.value.__context__)  # what a traceback would print
    assert refused.value.__cause__ is None
    assert not any("signature" in str(exc) for exc in shown)
