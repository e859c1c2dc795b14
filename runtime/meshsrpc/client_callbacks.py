"""The connected/disconnected callbacks of a node's clients, run in a per-client queue.

Apart from the registry writes' own queue, so that a slow callback never holds up a
reconnect's registry writes; in order per client, so that a client's
``on_client_disconnected`` never overtakes its ``on_client_connected``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

from ._serial import KeyedSerialQueue
from .lifecycle import ClientTable
from .srpc.stream import SrpcStream

__all__ = ["ClientCallbacks", "ClientLifecycleHandler"]

logger = logging.getLogger("meshsrpc.mesh_server")

ClientLifecycleHandler: TypeAlias = Callable[[str, Any], Any]
"""handler(client_id, metadata), sync or async; errors are logged."""


class ClientCallbacks:
    """Reports clients connected (once per presence) and gone, through the user's handlers."""

    def __init__(self, table: ClientTable, is_current: Callable[[SrpcStream], bool]) -> None:
        self._table = table
        self._is_current = is_current
        self.connected: list[ClientLifecycleHandler] = []
        self.disconnected: list[ClientLifecycleHandler] = []
        self._steps = KeyedSerialQueue()

    def announce(self, stream: SrpcStream) -> asyncio.Task[None]:
        """Report ``stream``'s client connected, unless already done or no longer current."""

        async def announce() -> None:
            table = self._table
            if table.is_announced(stream) or not self._is_current(stream):
                return
            if table.stream(stream) is None:
                return
            presence = table.announce(stream)
            await self._run(self.connected, stream.client_id, presence.metadata)

        return self._steps.submit(stream.client_id, announce)

    def report_gone(self, client_id: str, metadata: Any) -> None:
        """Report the client gone (after any report of it still queued)."""

        async def report() -> None:
            await self._run(self.disconnected, client_id, metadata)

        self._steps.submit(client_id, report)

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the reports queued so far."""
        await self._steps.drain(timeout)

    async def _run(
        self, handlers: list[ClientLifecycleHandler], client_id: str, metadata: Any
    ) -> None:
        for handler in list(handlers):
            try:
                result = handler(client_id, metadata)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("client lifecycle callback failed for %r", client_id)
