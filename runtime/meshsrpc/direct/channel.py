"""One direct connection between two nodes: length-prefixed frames on an asyncio Protocol.

A frame is a 4-byte big-endian length and that many bytes. The first frames are the
handshake (:mod:`.handshake`); after it every frame is one mesh message, the same
JSON a node would otherwise publish to the peer's Redis inbox (WIRE.md §1).

Flow control: past ``write_buffer_high`` unsent bytes the channel is *paused*
(:attr:`Channel.paused`): callers wait in :meth:`Channel.wait_writable` until the
peer has read it down to a quarter of that. A peer that does not read that much
within ``stall_timeout`` seconds is dropped, so a stalled peer cannot make a node
buffer without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

__all__ = ["Channel", "ChannelClosedError", "ChannelStalledError", "FrameTooLargeError"]

logger = logging.getLogger("meshsrpc.direct")

_HEADER = 4
#: Frames before the handshake is done: small, so an unauthenticated peer cannot make
#: a node buffer much.
HANDSHAKE_MAX_FRAME = 1024
#: Each side reads exactly two frames of the other's before the connection opens.
HANDSHAKE_FRAMES = 2
_HANDSHAKE_BACKLOG = 1024 * 1024
DEFAULT_WRITE_BUFFER_HIGH = 1024 * 1024
DEFAULT_STALL_TIMEOUT = 10.0


class ChannelClosedError(ConnectionError):
    """The connection closed (or was refused) before the awaited frame arrived."""


class FrameTooLargeError(ValueError):
    """The peer announced a frame above the limit."""


class ChannelStalledError(ConnectionError):
    """The peer stopped reading: the unsent bytes stayed above the mark too long."""


class Channel(asyncio.Protocol):
    """A framed, bidirectional connection; ``on_frame`` gets each frame once open.

    Before :meth:`open` frames are queued for :meth:`read_frame` (the handshake).
    ``on_closed`` is called once when the connection is gone, with the reason.
    """

    def __init__(
        self,
        max_frame_size: int,
        *,
        write_buffer_high: int = DEFAULT_WRITE_BUFFER_HIGH,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        self._max_frame_size = max_frame_size
        self._write_buffer_high = write_buffer_high
        self._stall_timeout = stall_timeout
        #: True while more than the high-water mark is unsent (queued here, or in the
        #: transport until it has written it down to its low-water mark).
        self.paused = False
        self._transport_paused = False
        self._queued = 0
        self._stall_timer: asyncio.TimerHandle | None = None
        # Created by the first writer that has to wait (most channels never pause).
        self._resumed: asyncio.Event | None = None
        self._handshake_frames = 0
        self._buffer = bytearray()
        self._pending: list[bytes] = []
        # A frame went out in this loop iteration: the next ones wait for its end.
        self._in_iteration = False
        #: The batch that frames queued now leave with, and the last one handed to the
        #: transport: a frame of a later batch was never written when the channel closed.
        self.batch = 0
        self.flushed = 0
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._on_frame: Callable[[bytes], None] | None = None
        self.on_closed: Callable[[Channel, BaseException | None], None] | None = None
        self.closed = False
        self.peer_id = 0
        self.peer_name = "?"
        self.made: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not derive from asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(
            high=self._write_buffer_high, low=self._write_buffer_high // 4
        )
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer_name = f"{peer[0]}:{peer[1]}"
        if not self.made.done():
            self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        while end - start >= _HEADER:
            on_frame = self._on_frame
            if on_frame is None and self._handshake_frames >= HANDSHAKE_FRAMES:
                # What follows the handshake waits for open() and its frame limit.
                if end - start > _HANDSHAKE_BACKLOG:
                    self._fail(FrameTooLargeError("too much data before the handshake ended"))
                    return
                break
            size = int.from_bytes(buffer[start : start + _HEADER], "big")
            limit = self._max_frame_size if on_frame is not None else HANDSHAKE_MAX_FRAME
            if size > limit:
                self._fail(FrameTooLargeError(f"frame of {size} bytes (limit {limit})"))
                return
            if end - start - _HEADER < size:
                break
            frame = bytes(buffer[start + _HEADER : start + _HEADER + size])
            start += _HEADER + size
            if on_frame is None:
                self._handshake_frames += 1
                self._handshake.put_nowait(frame)
            else:
                on_frame(frame)
                if self.closed:
                    return
        if start:
            del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    def pause_writing(self) -> None:
        self._transport_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self._transport_paused = False
        self.paused = False
        self._wake_writers()

    # --- use ----------------------------------------------------------------------

    @property
    def transport_socket(self) -> Any:
        """The connection's socket (a stand-in object under uvloop), if any."""
        return None if self._transport is None else self._transport.get_extra_info("socket")

    @property
    def buffered(self) -> int:
        """Bytes queued here or in the transport and not yet written to the socket."""
        queued = sum(len(part) for part in self._pending)
        transport = self._transport
        if transport is None or self.closed:
            return queued
        return queued + transport.get_write_buffer_size()

    async def wait_writable(self) -> None:
        """Return once the channel is below its low-water mark again, or closed."""
        while self.paused and not self.closed:
            if self._resumed is None:
                self._resumed = asyncio.Event()
            await self._resumed.wait()

    @property
    def is_open(self) -> bool:
        """True once the handshake is done and until the connection closes."""
        return self._on_frame is not None and not self.closed

    def send(self, payload: bytes) -> None:
        """Send one frame: the first of a loop iteration at once, the ones after it in
        the same iteration together in one write when the iteration ends.

        A lone call does not wait for the next iteration (nor for its poll of the
        selector); a burst, like the Redis publisher's pipelined PUBLISHes, costs one
        system call (and one wake-up of the peer) instead of one per frame.
        """
        transport = self._transport
        if transport is None or self.closed:
            raise ChannelClosedError("direct connection is closed")
        header = len(payload).to_bytes(_HEADER, "big")
        if not self._in_iteration:
            self._in_iteration = True
            self._loop.call_soon(self._end_iteration)
            self.batch += 1
            self.flushed = self.batch
            transport.write(header + payload)
            return
        if self.batch == self.flushed:
            self.batch += 1  # what is queued from now on leaves with the next write
        pending = self._pending
        pending.append(header)
        pending.append(payload)
        self._queued += _HEADER + len(payload)
        if self._queued > self._write_buffer_high and not self.paused:
            # Before the write: writers of this same loop turn must wait already.
            self._pause()

    def flush(self) -> None:
        """Write the queued frames now."""
        if self._pending:
            self._flush()

    def _end_iteration(self) -> None:
        self._in_iteration = False
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._queued = 0
        if self._transport is not None and not self.closed and pending:
            self.flushed = self.batch
            self._transport.write(b"".join(pending))
            if self.paused and not self._transport_paused:
                # The socket took it (or enough of it): no need to wait.
                self.paused = False
                self._wake_writers()

    async def read_frame(self) -> bytes:
        """The next handshake frame; raises :class:`ChannelClosedError` if it closed."""
        item = await self._handshake.get()
        if isinstance(item, BaseException):
            self._handshake.put_nowait(item)  # later readers see the same end
            raise item
        return item

    def open(self, on_frame: Callable[[bytes], None]) -> None:
        """The handshake is done: deliver every further frame to ``on_frame``."""
        self._on_frame = on_frame
        if self._buffer:  # bytes that arrived behind the last handshake frame
            self.data_received(b"")

    def close(self) -> None:
        """Close the connection (once the buffered frames are written)."""
        if self._transport is not None and not self.closed:
            if self._pending:
                self._flush()
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()
        self._closed(None)

    def _pause(self) -> None:
        self.paused = True
        if self._resumed is not None:
            self._resumed.clear()
        if self._stall_timer is None and not self.closed:
            self._stall_timer = self._loop.call_later(self._stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.paused and not self.closed:
            self._fail(
                ChannelStalledError(
                    f"the peer read too little for {self._stall_timeout:g} s "
                    f"({self.buffered} bytes unsent)"
                )
            )

    def _wake_writers(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._resumed is not None:
            self._resumed.set()

    def _fail(self, exc: BaseException) -> None:
        logger.warning(
            "direct connection %s (node %s): %s; closing", self.peer_name, self.peer_id, exc
        )
        if self._transport is not None:
            self._transport.abort()
        self._closed(exc)

    def _closed(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.paused = False
        self._buffer.clear()
        self._wake_writers()
        error = ChannelClosedError(f"direct connection closed{f': {exc}' if exc else ''}")
        self._handshake.put_nowait(error)
        if not self.made.done():
            self.made.set_exception(error)
            self.made.exception()  # retrieved: nobody may be waiting for it
        callback, self.on_closed = self.on_closed, None
        if callback is not None:
            callback(self, exc)
