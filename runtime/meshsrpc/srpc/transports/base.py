"""The transport contract: what a WebSocket implementation and the SRPC server see of each other.

Two small interfaces, one per direction. A transport (a listener, an ASGI app, a test
harness) turns each upgrade request into a :class:`~meshsrpc.srpc.auth.HandshakeRequest`,
asks a :class:`ConnectionAcceptor` to :meth:`~ConnectionAcceptor.authorize` it, answers
a refusal with its HTTP status before accepting anything, and hands an accepted
connection, wrapped as a :class:`Transport`, to :meth:`~ConnectionAcceptor.serve`.
``SrpcServer.acceptor`` is the server's side; the transports in this package use
nothing else of the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..auth import HandshakeAccepted, HandshakeRejected, HandshakeRequest

__all__ = ["ConnectionAcceptor", "HandshakeDecision", "PushingTransport", "Transport"]

HandshakeDecision = HandshakeAccepted | HandshakeRejected
"""What :meth:`ConnectionAcceptor.authorize` answers."""


class Transport(Protocol):
    """One accepted WebSocket, seen message by message.

    Adapters exist for ``websockets`` and ``picows`` (server and client side) and for
    ASGI servers.
    """

    @property
    def remote_address(self) -> str:
        """The peer's address, ``host:port`` when known."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer (or sent by us), once closed."""
        ...

    async def recv(self) -> bytes | str | None:
        """The next message; ``None`` once the connection is closed."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one binary message; may wait while the peer is slow to read."""
        ...

    def send_nowait(self, data: bytes) -> bool:
        """Send one binary message if that needs no waiting; False (nothing sent) otherwise.

        The caller then uses :meth:`send`. Adapters that cannot tell return False.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start (and briefly wait for) the closing handshake."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        ...

    def buffered_amount(self) -> int:
        """Bytes written but not yet handed to the network (0 if unknown)."""
        ...


@runtime_checkable
class PushingTransport(Protocol):
    """A transport that can hand messages over from its data callback.

    While ``recv()`` waits on an empty inbox, the transport first offers a message to
    ``on_message``; only when that returns False does the message go to ``recv()``.
    That spares the receive loop an event-loop turn per message.
    """

    on_message: Callable[[bytes | str], bool] | None
    """Set by the session while it serves the connection; None otherwise."""


class ConnectionAcceptor(Protocol):
    """The server as a transport sees it: decide an upgrade, then serve the connection.

    The settings are read when needed (a listener reads them when it starts, the
    others per connection), so a change on the server applies from then on.
    """

    @property
    def path(self) -> str:
        """The URL path SRPC is served at (a listener refuses others with 404)."""
        ...

    @property
    def max_frame_size(self) -> int:
        """The largest SRPC frame accepted; a transport may stop bigger messages earlier."""
        ...

    @property
    def handshake_timeout(self) -> float:
        """Seconds a new connection has to complete its upgrade request."""
        ...

    @property
    def close_timeout(self) -> float:
        """Seconds a closing handshake may take before the connection is dropped."""
        ...

    @property
    def compression(self) -> str | None:
        """The per-message compression to negotiate (``"deflate"``), or None."""
        ...

    async def authorize(self, request: HandshakeRequest) -> HandshakeDecision:
        """Decide an upgrade request before anything is accepted.

        A :class:`~meshsrpc.srpc.auth.HandshakeRejected` is answered with its HTTP
        status and reason, and the connection is not accepted.
        """
        ...

    async def serve(
        self, transport: Transport, request: HandshakeRequest, accepted: HandshakeAccepted
    ) -> None:
        """Run an accepted connection until it has closed and its cleanup has run.

        ``request`` and ``accepted`` are what :meth:`authorize` saw and answered.
        """
        ...
