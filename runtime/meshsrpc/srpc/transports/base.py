"""What the SRPC core needs from a WebSocket implementation: a tiny message-level interface."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Transport"]


class Transport(Protocol):
    """One accepted WebSocket, seen message by message.

    Adapters exist for ``websockets`` (server and client side) and for ASGI servers.
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
