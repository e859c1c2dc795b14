"""Clients a draining node sent away: did each reappear on another node in time?

:meth:`MeshSrpcServer.drain` closes every stream with 1012 (``"restart"``), and SDK
clients reconnect at once, elsewhere. The release of such a stream first waits (up to
the drain's grace) until the registry names another node for the client; if it does,
the client moved and is neither unregistered nor reported gone here. The new node's
``kickClient`` wakes the wait early; the registry is read again at least every
:data:`POLL_INTERVAL` seconds, for a node that sends no kick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["POLL_INTERVAL", "DrainMoves", "OwnerLookup"]

#: Longest wait between two registry reads while a client is expected elsewhere.
POLL_INTERVAL = 0.5

#: owner(client_id): the node id the registry names for the client, None if none.
OwnerLookup = Callable[[str], Awaitable[int | None]]


class DrainMoves:
    """The drain in progress (its grace), and per client sent away, its wake-up event."""

    def __init__(self) -> None:
        #: How long a client sent away may take to reappear elsewhere; None: no drain.
        self.grace: float | None = None
        self._moving: dict[str, asyncio.Event] = {}

    def arrived(self, client_id: str) -> None:
        """Another node took the client over (its ``kickClient``): wake the wait, if any."""
        moving = self._moving.get(client_id)
        if moving is not None:
            moving.set()

    async def moved(self, client_id: str, here: int, owner: OwnerLookup) -> bool:
        """True once the registry names a node other than ``here`` for the client, within
        the grace; False without a drain in progress, or when the grace ran out."""
        grace = self.grace
        if grace is None:
            return False
        moving = self._moving.setdefault(client_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        try:
            while True:
                try:
                    node_id = await owner(client_id)
                except Exception:
                    node_id = None
                if node_id is not None and node_id != here:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moving.wait(), min(remaining, POLL_INTERVAL))
        finally:
            self._moving.pop(client_id, None)
