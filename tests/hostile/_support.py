"""Helpers of the hostile-peer tests: signed servers and clients, raw signed URLs."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from meshsrpc import SrpcClient, SrpcServer
from meshsrpc.srpc.auth import sign

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
from tests.srpc._support import ClientFactory, ServerFactory, url_of

SECRET = "hostile-tests"

Server = SrpcServer[ClientMessage, ServerMessage]
Client = SrpcClient[ClientMessage, ServerMessage]


async def signed_server(make_server: ServerFactory, **kwargs: Any) -> Server:
    """A listening test server that checks signatures with :data:`SECRET`."""
    return await make_server(auth_secret=SECRET, **kwargs)


async def connected_client(
    make_client: ClientFactory, server: Server, client_id: str = "c1", **kwargs: Any
) -> Client:
    """A client signed with :data:`SECRET`, connected, that does not reconnect."""
    client = make_client(server, client_id, client_secret=SECRET, enable_reconnect=False, **kwargs)
    await client.connect()
    return client


def signed_url(server: Server, client_id: str = "raw", **overrides: str) -> str:
    """A connect URL signed with :data:`SECRET`; ``overrides`` replace query parameters."""
    query = {"authv": "1", "appv": "1.0.0", "ts": str(int(time.time() * 1000))}
    query |= {"id": f"{client_id}-{time.monotonic_ns()}", "cid": client_id, "_v": "2"}
    query["signature"] = sign(
        SECRET, query["authv"], query["appv"], query["ts"], query["id"], query["cid"]
    )
    query |= overrides
    return f"{url_of(server)}?{urlencode(query)}"
