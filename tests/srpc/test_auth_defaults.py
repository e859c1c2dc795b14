"""Auth fails closed: a server that cannot authenticate refuses everyone (as the TypeScript one)."""

from __future__ import annotations

import logging
import time

import pytest
from meshsrpc import SrpcError

from tests.srpc._support import ClientFactory, ServerFactory, url_of
from tests.srpc.test_auth import signed_query, status_of


@pytest.fixture(autouse=True)
def _no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SRPC_AUTH_SECRET", raising=False)


async def test_no_auth_configured_refuses_every_connection_with_500(
    make_server: ServerFactory,
) -> None:
    server = await make_server(allow_unsigned=False)
    assert server.auth_mode == "none"
    base = url_of(server)
    assert await status_of(base + "?id=i&cid=c1&appv=1") == 500  # unsigned
    assert await status_of(base + signed_query("any")) == 500  # signed with some key
    assert await status_of(base + signed_query("")) == 500  # signed with the empty key


async def test_a_client_of_an_unconfigured_server_cannot_connect(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(allow_unsigned=False)
    with pytest.raises(SrpcError, match="500"):
        await make_client(server, enable_reconnect=False).connect()
    assert server.streams_by_client_id == {}


async def test_the_refusal_is_logged_once_with_what_to_configure(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(allow_unsigned=False, listen=False)
    with caplog.at_level(logging.INFO, logger="meshsrpc.srpc.server"):
        await server.listen("127.0.0.1", 0)
        for _ in range(3):
            assert await status_of(url_of(server) + "?id=i&cid=c1&appv=1") == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    for name in ("SRPC_AUTH_SECRET", "set_client_key_fetcher", "allow_unsigned=True"):
        assert name in errors[0].getMessage()


async def test_allow_unsigned_accepts_unsigned_connections_and_says_so(
    make_server: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(allow_unsigned=True, listen=False)
    with caplog.at_level(logging.INFO, logger="meshsrpc.srpc.server"):
        await server.listen("127.0.0.1", 0)
    assert server.auth_mode == "unsigned"
    assert any("allow_unsigned=True" in r.getMessage() for r in caplog.records)
    client = make_client(server)
    await client.connect()
    assert client.is_connected


async def test_an_empty_secret_counts_as_no_secret(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret="", allow_unsigned=False)
    assert server.auth_secret is None and server.auth_mode == "none"
    assert await status_of(url_of(server) + signed_query("")) == 500


async def test_an_empty_secret_in_the_environment_counts_as_no_secret(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRPC_AUTH_SECRET", "")
    server = await make_server(allow_unsigned=False)
    assert server.auth_mode == "none"
    assert await status_of(url_of(server) + signed_query("")) == 500


async def test_a_secret_still_requires_signatures_when_unsigned_is_allowed(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret="s3cret", allow_unsigned=True)
    assert server.auth_mode == "secret"
    assert await status_of(url_of(server) + "?id=i&cid=c1&appv=1") == 403


async def test_startup_logs_the_auth_mode(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(auth_secret="s3cret", listen=False)
    with caplog.at_level(logging.INFO, logger="meshsrpc.srpc.server"):
        await server.listen("127.0.0.1", 0)
    assert any("shared secret" in r.getMessage() for r in caplog.records)


async def test_a_key_fetcher_or_authorizer_is_configuration_enough(
    make_server: ServerFactory,
) -> None:
    fetched = await make_server(allow_unsigned=False)
    fetched.set_client_key_fetcher(lambda cid: "k")
    assert fetched.auth_mode == "key-fetcher"
    assert await status_of(url_of(fetched) + signed_query("wrong")) == 403
    decided = await make_server(allow_unsigned=False)
    decided.set_client_authorizer(lambda query, request: False)
    assert decided.auth_mode == "authorizer"
    assert await status_of(url_of(decided) + f"?id=i&cid=c&appv=1&ts={time.time()}") == 403
