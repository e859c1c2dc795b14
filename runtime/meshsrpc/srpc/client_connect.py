"""How :class:`~meshsrpc.SrpcClient` opens a connection: the signed handshake URL, then the socket.

The socket is a :class:`~.transports.base.Transport` on ``picows`` or ``websockets``
(:func:`~.transports.choice.choose_transport`); every failure to open one is an
:class:`~meshsrpc.errors.SrpcError` whose text never holds the signed query.
"""

from __future__ import annotations

import ssl as ssl_module
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

from ..errors import SrpcError
from .auth import sign
from .clientmeta import encode_meta_value
from .ids import uuid7
from .transports.base import Transport
from .transports.choice import choose_transport
from .transports.websockets import SrpcClientConnection, WebsocketsTransport

__all__ = ["bare_url", "checked_url", "handshake_url", "open_transport"]


def checked_url(url: str) -> str:
    """The server URL, if its scheme is one a WebSocket client can open.

    Checked here: websockets' own error quotes the whole URL, and at connect time that
    includes the signed handshake query.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("ws", "wss"):
        return url
    hint = {"http": "ws", "https": "wss"}.get(scheme)
    fix = f"; use {hint}://{parts.netloc}{parts.path}" if hint else ""
    raise SrpcError(f"SrpcClient needs a ws:// or wss:// URL, got {bare_url(url)!r}{fix}")


def bare_url(url: str) -> str:
    """``url`` without its query and fragment (they may carry credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def handshake_url(
    url: str,
    client_id: str,
    *,
    app_version: str,
    protocol_version: int,
    secret: str | None,
    meta: Mapping[str, object],
    supersede: bool,
) -> str:
    """``url`` with the handshake query (WIRE.md): ids, timestamp, signature, metadata."""
    parts = urlsplit(url)
    query: dict[str, str] = {
        "authv": "1",
        "appv": app_version,
        "ts": str(int(time.time() * 1000)),
        "id": uuid7(),
        "cid": client_id,
    }
    if secret is not None:
        query["signature"] = sign(
            secret,
            query["authv"],
            query["appv"],
            query["ts"],
            query["id"],
            query["cid"],
        )
    query["_v"] = str(protocol_version)
    if supersede:
        query["_supersede"] = "1"
    for name, value in meta.items():
        query[f"m--{name}"] = encode_meta_value(value)
    joined = "&".join(filter(None, [parts.query, urlencode(query)]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


async def open_transport(
    url: str,
    transport: str | None,
    *,
    server_url: str,
    max_frame_size: int,
    connect_timeout: float,
    ssl: ssl_module.SSLContext | None,
) -> Transport:
    """Open ``url`` (the signed one) on the ``transport`` named; errors name ``server_url``."""
    if choose_transport(transport) == "picows":
        from .transports.picows_connection import connect as picows_connect

        return await picows_connect(
            url, max_frame_size=max_frame_size, connect_timeout=connect_timeout, ssl=ssl
        )
    connection = await _connect_websockets(
        url,
        server_url=server_url,
        max_frame_size=max_frame_size,
        connect_timeout=connect_timeout,
        ssl=ssl,
    )
    return WebsocketsTransport(connection)


async def _connect_websockets(
    url: str,
    *,
    server_url: str,
    max_frame_size: int,
    connect_timeout: float,
    ssl: ssl_module.SSLContext | None,
) -> ClientConnection:
    options: dict[str, Any] = {}
    if ssl is not None:
        options["ssl"] = ssl
    try:
        connection = await ws_connect(
            url,
            compression=None,
            ping_interval=None,
            max_size=max(2 * max_frame_size, 64 * 1024),
            open_timeout=connect_timeout,
            proxy=None,
            create_connection=SrpcClientConnection,
            **options,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        raise SrpcError(f"server refused the connection: HTTP {status} {body}".strip()) from exc
    except InvalidURI:
        # Not chained: its text holds the signed query.
        raise SrpcError(f"could not connect: invalid URL {bare_url(server_url)!r}") from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidMessage) as exc:
        raise SrpcError(f"could not connect to {server_url}: {exc}") from exc
    return connection
