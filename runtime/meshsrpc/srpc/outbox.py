"""Sending frames on one transport: straight through while it takes them, else queued.

An :class:`Outbox` hands each frame to ``Transport.send_nowait``; only while the
transport makes us wait (a slow peer) do frames queue here, for a writer task that
exists just as long. The close frame goes through the same queue, after the frames
sent before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from .transports.base import Transport

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)

_CLOSE = object()


class Outbox:
    """The send side of one connection, bounded by ``max_buffer`` bytes.

    ``on_overflow`` is called when the bytes waiting (here and in the transport)
    exceed ``max_buffer``: the peer is not reading.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_buffer: int | None,
        on_overflow: Callable[[], None],
        label: str = "srpc",
    ) -> None:
        self.transport = transport
        self.max_buffer = max_buffer
        self.label = label
        self.failed = False
        """True once the transport refused a frame (the connection is gone)."""
        self._on_overflow = on_overflow
        # Frames go straight to the transport while it can take them without waiting;
        # the queue and the writer task exist only while something has to wait (a
        # slow peer, a close). Idle connections then hold no task and no queue.
        self._queue: deque[bytes | object] | None = None
        self._queued = 0
        self._close_args: tuple[int, str] = (1000, "")
        self._writer: asyncio.Task[None] | None = None
        # Created only when someone waits (most connections never do).
        self._drained: asyncio.Event | None = None

    @property
    def writer(self) -> asyncio.Task[None] | None:
        """The writer task, while frames wait."""
        return self._writer

    @property
    def size(self) -> int:
        """Bytes queued here plus bytes the transport has not written yet."""
        return self._queued + self.transport.buffered_amount()

    @property
    def above_low_water(self) -> bool:
        """True while more than a quarter of ``max_buffer`` (default 1 MiB) waits here."""
        return self._queued > (self.max_buffer or 1 << 20) // 4

    def send(self, data: bytes) -> None:
        """Send one frame, or queue it."""
        if self.failed:
            return
        if self._writer is None:
            try:
                sent = self.transport.send_nowait(data)
            except Exception:
                logger.debug("%s: send failed; connection is gone", self.label)
                self.failed = True
                return
        else:
            sent = False
        if not sent:
            self._queued += len(data)
            self._enqueue(data)
        if self.max_buffer is not None and self.size > self.max_buffer:
            self._on_overflow()

    def close(self, code: int, reason: str) -> None:
        """Send the close frame after the frames queued so far."""
        self._close_args = (code, reason)
        self._enqueue(_CLOSE)

    def clear(self) -> None:
        """Drop the queued frames (the connection is being aborted)."""
        if self._queue is not None:
            self._queue.clear()
        self._queued = 0

    async def wait_drained(self) -> None:
        """Wait until the queue is under the low-water mark again (or :meth:`wake`)."""
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()
        await self._drained.wait()

    def wake(self) -> None:
        """Wake every :meth:`wait_drained` (the connection ended)."""
        if self._drained is not None:
            self._drained.set()

    def _enqueue(self, item: bytes | object) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name=f"{self.label}-writer")

    async def _write_loop(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue:
                item = queue.popleft()
                if item is _CLOSE:
                    code, reason = self._close_args
                    with contextlib.suppress(Exception):
                        await self.transport.close(code, reason)
                    return
                assert isinstance(item, bytes)
                if not self.failed:
                    try:
                        await self.transport.send(item)
                    except Exception:
                        logger.debug("%s: send failed; connection is gone", self.label)
                        self.failed = True
                self._queued -= len(item)
                if self._drained is not None and not self.above_low_water:
                    self._drained.set()
        finally:
            self._writer = None
