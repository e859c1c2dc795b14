"""Server-side liveness: close streams that have been silent for too long (4003)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from .stream import SrpcStream

__all__ = ["InactivityMonitor"]

logger = logging.getLogger(__name__)


class InactivityMonitor:
    """One task per server that closes streams silent for ``timeout`` seconds.

    A single sweep every ``timeout / 4`` (at most 5 s) costs less than a timer per
    stream that every received frame would have to reset.
    """

    def __init__(
        self, timeout: Callable[[], float], streams: Callable[[], Iterable[SrpcStream]]
    ) -> None:
        # Read at each sweep: the server's setting may change while it runs.
        self._timeout = timeout
        self._streams = streams
        self._task: asyncio.Task[None] | None = None

    @property
    def timeout(self) -> float:
        """Seconds a stream may stay silent."""
        return self._timeout()

    def ensure_running(self) -> None:
        """Start the sweep task if it is not running (called when a stream arrives)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sweep(), name="srpc-inactivity")

    async def stop(self) -> None:
        """Stop the sweep task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sweep(self) -> None:
        interval = max(0.01, min(self.timeout / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self.timeout
            for stream in list(self._streams()):
                session = stream.session
                if session is None or not session.is_open:
                    continue
                if session.protocol.last_received_at < deadline:
                    logger.info(
                        "stream of %r silent for %.1f s; closing", stream.client_id, self.timeout
                    )
                    await session.close("timeout", "Inactivity timeout")
