"""Byte streams: binary substreams multiplexed over one SRPC connection (WIRE.md §4).

The side that writes picks the id: the server numbers its substreams 2, 4, 6, ...,
the client 1, 3, 5, .... The id travels inside an ordinary call (for example
``uUploadRequest.streamId``), so data may arrive before the receiving side has
created its reader ("early data"): it is kept for up to 5 s, within caps per
substream (2 MiB), per connection (4 MiB, 64 substreams) and per process (64 MiB,
:data:`early_data_budget`); past a cap or the time limit the substream fails and
the writer is told so with ``destroy``.

Writing waits while the connection's send buffer is full (backpressure); a reader that
falls behind by more than ``reader_high_water`` bytes pauses the connection's receive
loop until it catches up, which pushes back on the writer through TCP. While paused,
nothing else is received on that connection either, so read a byte stream in a task
that does not wait for another reply on the same connection. A reader that goes away
unfinished (destroyed, its ``async with`` block left, the handler that opened it
raised, or it was dropped unreferenced) releases its substream: its data is
discarded, the writer is told with ``destroy``, and the receive loop never waits
for it again.

The bookkeeping (ids, early data, its caps and expiry) is :mod:`.bytestream_book`,
without I/O; this module is its asyncio layer: the reader and writer objects, the
backpressure waits and the one timer for early data.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

import betterproto2

from ..errors import SrpcError
from .bytestream_book import (
    CHUNK_SIZE,
    PENDING_MAX_BYTES,
    PENDING_MAX_CONNECTION_BYTES,
    PENDING_MAX_PROCESS_BYTES,
    PENDING_MAX_SECONDS,
    PENDING_MAX_STREAMS,
    BookEvent,
    ByteStreamBook,
    ByteStreamLimits,
    ChunkReceived,
    EarlyDataBudget,
    EarlyDataRefused,
    ReaderEnded,
    WriterRefused,
    early_data_budget,
)
from .protocol import SrpcProtocol

__all__ = [
    "CHUNK_SIZE",
    "PENDING_MAX_BYTES",
    "PENDING_MAX_CONNECTION_BYTES",
    "PENDING_MAX_PROCESS_BYTES",
    "PENDING_MAX_SECONDS",
    "PENDING_MAX_STREAMS",
    "ByteStreamLimits",
    "ByteStreamLink",
    "ByteStreamManager",
    "ByteStreamReader",
    "ByteStreamWriter",
    "EarlyDataBudget",
    "early_data_budget",
]

logger = logging.getLogger(__name__)


class ByteStreamLink(Protocol):
    """What the byte streams need from their connection (an :class:`~.session.SrpcSession`)."""

    label: str

    @property
    def is_open(self) -> bool:
        """True until the connection starts closing."""
        ...

    def send(self, data: bytes) -> None:
        """Send one frame (or queue it)."""
        ...

    async def drain(self) -> None:
        """Wait until the send buffer is low again; SrpcError once closed."""
        ...


class ByteStreamWriter:
    """The sending end of a substream; ``async with`` finishes it (or destroys it on error)."""

    def __init__(self, manager: ByteStreamManager, stream_id: int) -> None:
        self._manager = manager
        self.stream_id = stream_id
        self._error: str | None = None
        self._done = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` in chunks, waiting while the connection's send buffer is full."""
        view = memoryview(data)
        for start in range(0, max(len(view), 1), self._manager.chunk_size):
            await self._manager.link.drain()
            self._check()
            self._manager.send_op(
                self.stream_id, "write", chunk=bytes(view[start : start + self._manager.chunk_size])
            )

    async def finish(self) -> None:
        """End the substream normally."""
        self._check()
        self._done = True
        self._manager.send_op(self.stream_id, "finish")
        self._manager.forget_writer(self.stream_id)

    async def destroy(self, error: str | None = None) -> None:
        """Abort the substream; the reader fails with ``error``.

        Nothing is sent when the substream already failed: a destroy from the reader
        is never answered with a destroy (the TypeScript peer would keep the echo).
        """
        if self._done:
            return
        self._done = True
        self._manager.forget_writer(self.stream_id)
        if self._error is None:
            self._manager.send_op(self.stream_id, "destroy", error=error)

    def _check(self) -> None:
        if self._error is not None:
            raise SrpcError(f"byte stream {self.stream_id} failed: {self._error}")
        if self._done:
            raise SrpcError(f"byte stream {self.stream_id} is already finished")

    def _fail(self, error: str) -> None:
        self._error = error

    async def __aenter__(self) -> ByteStreamWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._done or not self._manager.link.is_open:
            return
        if exc is None:
            await self.finish()
        else:
            await self.destroy(str(exc) or type(exc).__name__)


class ByteStreamReader:
    """The receiving end of a substream: ``async for chunk in reader`` or ``await read()``.

    ``async with`` destroys it on exit unless it was read to the end.
    """

    def __init__(self, manager: ByteStreamManager, stream_id: int) -> None:
        self._manager = manager
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._finished = False
        self._error: str | None = None
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._owner: asyncio.Task[Any] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise SrpcError(f"byte stream {self.stream_id} failed: {self._error}")
            if self._finished:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= self._manager.reader_high_water // 2:
            self._room.set()
        return chunk

    async def read(self) -> bytes:
        """Read the whole substream until ``finish``."""
        return b"".join([chunk async for chunk in self])

    async def destroy(self, error: str | None = None) -> None:
        """Stop reading; the writer is told to stop with ``error``."""
        self._manager.release_reader(self, error or "destroyed by reader")

    async def __aenter__(self) -> ByteStreamReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.destroy("reader closed")
        else:
            await self.destroy(str(exc) or type(exc).__name__)

    @property
    def _is_over(self) -> bool:
        return self._finished or self._error is not None

    # --- fed by the manager ----------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        if self._is_over:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self._manager.reader_high_water:
            self._room.clear()
        self._readable.set()

    def _finish(self) -> None:
        self._finished = True
        self._readable.set()
        self._room.set()

    def _fail(self, error: str) -> None:
        if self._error is None:
            self._error = error
        self._chunks.clear()
        self._buffered = 0
        self._readable.set()
        self._room.set()


class ByteStreamManager:
    """All substreams of one connection, both directions: a :class:`ByteStreamBook` and
    the asyncio objects and timer around it."""

    def __init__(
        self,
        link: ByteStreamLink,
        protocol: SrpcProtocol,
        first_id: int,
        *,
        chunk_size: int = CHUNK_SIZE,
        reader_high_water: int = 1024 * 1024,
        limits: ByteStreamLimits | None = None,
        budget: EarlyDataBudget | None = None,
    ) -> None:
        self.link = link
        self.protocol = protocol
        self.chunk_size = chunk_size
        self.reader_high_water = reader_high_water
        self.book = ByteStreamBook(first_id, limits, budget)
        self._writers: dict[int, ByteStreamWriter] = {}
        # Weak: a reader nobody holds any more is released by its finalizer.
        self._readers: weakref.WeakValueDictionary[int, ByteStreamReader] = (
            weakref.WeakValueDictionary()
        )
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending_max_seconds(self) -> float:
        """How long early data waits for its reader (seconds)."""
        return self.book.max_seconds

    @pending_max_seconds.setter
    def pending_max_seconds(self, seconds: float) -> None:
        self.book.max_seconds = seconds

    @property
    def budget(self) -> EarlyDataBudget:
        """The early-data budget this connection draws on."""
        return self.book.budget

    # --- API -------------------------------------------------------------------------

    def create_writer(self) -> ByteStreamWriter:
        """Open a new outgoing substream; send its ``stream_id`` to the peer in a call."""
        writer = ByteStreamWriter(self, self.book.new_writer())
        self._writers[writer.stream_id] = writer
        return writer

    def open_reader(self, stream_id: int | None) -> ByteStreamReader:
        """The reader for a substream the peer writes (data that came early is kept).

        Raises ValueError for a missing id (None or 0) and for an id that already
        has a reader, as the TypeScript implementation does.
        """
        early = self.book.open_reader(stream_id)
        assert stream_id is not None
        reader = ByteStreamReader(self, stream_id)
        if early.error is not None:
            reader._fail(early.error)
            return reader
        for chunk in early.chunks:
            reader._feed(chunk)
        if early.finished:
            reader._finish()
            return reader
        self._readers[stream_id] = reader
        # Tie the reader to the request handler opening it: if that handler fails,
        # the upload it was reading is refused (see release_owned).
        reader._owner = asyncio.current_task()
        reader._finalizer = weakref.finalize(
            reader, self._reader_dropped, stream_id, reader._room, asyncio.get_running_loop()
        )
        reader._finalizer.atexit = False  # at interpreter exit there is no one to tell
        return reader

    def release_reader(self, reader: ByteStreamReader, error: str) -> None:
        """Give up a reader that is not finished: drop its data, tell the writer once."""
        if reader._is_over:
            return
        reader._fail(error)
        tell_writer = self.book.release_reader(reader.stream_id, error)
        self._forget_reader(reader.stream_id)
        if tell_writer:
            self._send_destroy(reader.stream_id, error)

    def release_owned(self, owner: asyncio.Task[Any] | None, error: str) -> None:
        """Release the unfinished readers that ``owner`` (a failed handler's task) opened."""
        if owner is None or not self._readers:
            return
        for reader in [r for r in self._readers.values() if r._owner is owner]:
            self.release_reader(reader, error)

    def stop_waiting(self) -> None:
        """The connection is closing: never keep the receive loop waiting for a reader."""
        for reader in list(self._readers.values()):
            reader._room.set()

    def fail_all(self, error: str) -> None:
        """The connection ended: every open substream fails."""
        for reader in list(self._readers.values()):
            reader._fail(error)
            if reader._finalizer is not None:
                reader._finalizer.detach()
        for writer in self._writers.values():
            writer._fail(error)
        self._readers.clear()
        self._writers.clear()
        self.book.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def forget_writer(self, stream_id: int) -> None:
        """Our substream ended (finished or destroyed)."""
        self._writers.pop(stream_id, None)
        self.book.writer_closed(stream_id)

    def send_op(
        self, stream_id: int, kind: str, *, chunk: bytes | None = None, error: str | None = None
    ) -> None:
        """Send one ``byteStreamOperation`` (write / finish / destroy)."""
        self.link.send(
            self.protocol.byte_stream_operation(stream_id, kind, chunk=chunk, error=error)
        )

    async def on_operation(self, op: betterproto2.Message) -> None:
        """Handle one received ``byteStreamOperation``."""
        fields: Any = op
        try:
            kind, inner = betterproto2.which_one_of(op, "operation")
        except RuntimeError:
            return
        loop = asyncio.get_running_loop()
        events = self.book.receive(
            fields.stream_id,
            kind,
            loop.time(),
            chunk=getattr(inner, "chunk", b""),
            error=getattr(inner, "error", None),
        )
        for event in events:
            room = self._apply(event)
            if room is not None and not room.is_set() and self.link.is_open:
                # Wait on the event alone: holding the reader here would keep a
                # dropped one alive, and with it this wait.
                await room.wait()
        self._arm_timer(loop)

    # --- internals -------------------------------------------------------------------

    def _apply(self, event: BookEvent) -> asyncio.Event | None:
        """Apply one book event; the reader's room event when it is a chunk."""
        if isinstance(event, ChunkReceived):
            reader = self._readers.get(event.stream_id)
            if reader is None:
                return None  # dropped: its finalizer tells the writer
            reader._feed(event.chunk)
            return reader._room
        if isinstance(event, ReaderEnded):
            reader = self._readers.get(event.stream_id)
            if reader is not None:
                if event.error is None:
                    reader._finish()
                else:
                    reader._fail(event.error)
                self._forget_reader(event.stream_id)
        elif isinstance(event, WriterRefused):
            writer = self._writers.pop(event.stream_id, None)
            if writer is not None:
                writer._fail(event.error)
        elif isinstance(event, EarlyDataRefused):
            logger.info(
                "%s: byte stream %d failed: %s", self.link.label, event.stream_id, event.error
            )
            self._send_destroy(event.stream_id, event.error)
        return None

    def _send_destroy(self, stream_id: int, error: str) -> None:
        if self.link.is_open:
            self.send_op(stream_id, "destroy", error=error)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self.book.next_deadline()
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is None or timer.when() != deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        for event in self.book.expire(loop.time()):
            self._apply(event)
        self._arm_timer(loop)

    def _forget_reader(self, stream_id: int) -> None:
        reader = self._readers.pop(stream_id, None)
        if reader is not None and reader._finalizer is not None:
            reader._finalizer.detach()

    def _reader_dropped(
        self, stream_id: int, room: asyncio.Event, loop: asyncio.AbstractEventLoop
    ) -> None:
        # Runs from the garbage collector, possibly in the middle of other code: wake
        # the receive loop now, tell the writer from the event loop.
        room.set()
        if not loop.is_closed():
            loop.call_soon(self._release_dropped, stream_id)

    def _release_dropped(self, stream_id: int) -> None:
        if stream_id in self._readers:
            return  # a new reader for the same id
        error = "receiver dropped"
        if self.book.release_reader(stream_id, error):
            logger.info("%s: byte stream %d released: %s", self.link.label, stream_id, error)
            self._send_destroy(stream_id, error)
