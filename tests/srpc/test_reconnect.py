"""The SDK client after an unexpected drop: back quickly, back off only on repeated failure."""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import SrpcConflictError
from meshsrpc.redis_server import free_port

from tests.srpc._support import ClientFactory, ServerFactory, eventually, url_of

pytestmark = pytest.mark.timeout(30)


def test_the_first_retry_comes_within_a_few_hundred_milliseconds(
    make_client: ClientFactory,
) -> None:
    client = make_client("ws://127.0.0.1:9/srpc")
    # Jittered between half and all of reconnect_delay; doubled on each failure.
    assert 0.1 <= client.reconnect_delay / 2 <= client.reconnect_delay <= 0.3
    assert client.max_reconnect_delay == 30.0


async def test_a_dropped_client_is_back_before_its_first_full_delay(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    await eventually(lambda: "c1" in server.streams_by_client_id)
    dropped = server.streams_by_client_id["c1"]
    assert dropped.session is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    await dropped.session.close("timeout", "simulated drop")
    await eventually(lambda: server.streams_by_client_id.get("c1") not in (None, dropped))
    await eventually(lambda: client.is_connected)
    # Generous for a loaded machine; the delay itself is at most reconnect_delay.
    assert loop.time() - started < 5.0


async def test_a_conflict_while_reconnecting_is_retried_until_the_id_is_free(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    await eventually(lambda: "c1" in server.streams_by_client_id)
    first = server.streams_by_client_id["c1"]
    assert first.session is not None
    await first.session.close("timeout", "simulated drop")
    # Another connection takes the id before the client is back (a ghost, a race).
    other = make_client(server, enable_reconnect=False)
    await other.connect()
    await asyncio.sleep(1.0)  # the client's retries meet 4001 meanwhile
    assert not client.is_connected
    await other.disconnect()
    await eventually(lambda: client.is_connected, timeout=10)


async def test_a_conflict_on_the_first_connect_still_raises(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    await make_client(server).connect()
    with pytest.raises(SrpcConflictError):
        await make_client(server).connect()


async def test_after_a_failed_attempt_the_next_url_is_tried_at_once(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    draining = await make_server()
    alive = await make_server()
    dead = f"ws://127.0.0.1:{free_port()}/srpc"  # nothing listens: refused at once
    # A backoff this long would fail the test: only trying the next URL at once passes.
    client = make_client(draining, fallback_urls=[dead, url_of(alive)], reconnect_delay=20.0)
    await client.connect()
    await eventually(lambda: "c1" in draining.streams_by_client_id)
    stream = draining.streams_by_client_id["c1"]
    await draining.close_stream(stream, 1012, "restart", "Server restarting: reconnect")
    await eventually(lambda: "c1" in alive.streams_by_client_id, timeout=8)
    await eventually(lambda: client.is_connected)
    assert client.url == url_of(alive)
