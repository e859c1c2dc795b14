"""SRPC as an ASGI app, to mount in Starlette, FastAPI or any ASGI server.

Routing is the host framework's job: the app serves whatever path it is mounted at.
Run alone (``uvicorn module:server.asgi``) it handles lifespan and closes the server on
shutdown; mounted in a framework, call ``await server.close()`` in the app's lifespan.
Refusals are sent as HTTP responses when the server supports the
``websocket.http.response`` extension (uvicorn does), else as a close before accept
(which ASGI servers turn into 403).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..auth import HandshakeRejected, HandshakeRequest, parse_query
from .base import ConnectionAcceptor

__all__ = ["AsgiApp", "AsgiTransport"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiTransport:
    """:class:`~.base.Transport` over an accepted ASGI WebSocket."""

    def __init__(self, receive: Receive, send: Send, remote_address: str) -> None:
        self._receive = receive
        self._send = send
        self._remote_address = remote_address
        self._close_code: int | None = None
        self._aborted = False
        self._closed = False
        # A pump task feeds a one-slot queue, so abort() can wake a pending recv();
        # the single slot keeps ASGI's own flow control (we read only as fast as we consume).
        self._inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue(maxsize=1)
        self._pump: asyncio.Task[None] | None = None

    @property
    def remote_address(self) -> str:
        return self._remote_address

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def recv(self) -> bytes | str | None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._pump_messages(), name="srpc-asgi-receive")
        if self._aborted:
            return None
        data = await self._inbox.get()
        return None if self._aborted else data

    async def _pump_messages(self) -> None:
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data: bytes | str | None = message.get("bytes")
                    if data is None:
                        data = message.get("text") or ""
                    await self._inbox.put(data)
                elif kind == "websocket.disconnect":
                    if self._close_code is None:
                        self._close_code = int(message.get("code", 1005))
                    self._closed = True
                    await self._inbox.put(None)
                    return
        except Exception:
            logger.debug("ASGI receive failed", exc_info=True)
            self._closed = True
            await self._inbox.put(None)

    def stop(self) -> None:
        """Stop the receive pump (the app is returning)."""
        if self._pump is not None:
            self._pump.cancel()

    async def send(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    def send_nowait(self, data: bytes) -> bool:
        # An ASGI send is a coroutine of the server's; it cannot be run without awaiting.
        return False

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._close_code is None:
            self._close_code = code
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def abort(self) -> None:
        # ASGI has no abort; ending the app makes the server drop the connection.
        self._aborted = True
        if self._inbox.empty():
            self._inbox.put_nowait(None)

    def buffered_amount(self) -> int:
        return 0


class AsgiApp:
    """An ASGI application serving SRPC for ``acceptor`` (``server.asgi`` is one).

    ``on_shutdown`` runs on the ASGI lifespan's shutdown (``server.asgi`` closes the
    server there).
    """

    def __init__(
        self,
        acceptor: ConnectionAcceptor,
        *,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.acceptor = acceptor
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 426,
                    "headers": [(b"content-type", b"text/plain"), (b"upgrade", b"websocket")],
                }
            )
            await send({"type": "http.response.body", "body": b"WebSocket upgrade required\n"})
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else ""
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        request = HandshakeRequest(
            # The framework routed the request here; the server's own path check is moot.
            path=self.acceptor.path,
            query=parse_query(scope.get("query_string", b"")),
            headers=headers,
            remote_address=address,
        )
        decision = await self.acceptor.authorize(request)
        if isinstance(decision, HandshakeRejected):
            logger.info("refused upgrade from %s: %d %s", address, decision.status, decision.reason)
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": decision.status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send(
                    {
                        "type": "websocket.http.response.body",
                        "body": (decision.reason + "\n").encode(),
                    }
                )
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        transport = AsgiTransport(receive, send, address)
        try:
            await self.acceptor.serve(transport, request, decision)
        finally:
            transport.stop()
