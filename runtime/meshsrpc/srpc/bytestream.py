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
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import betterproto2

from ..errors import SrpcError
from .frames import proto_meta

if TYPE_CHECKING:
    from .session import SrpcSession

__all__ = [
    "CHUNK_SIZE",
    "PENDING_MAX_BYTES",
    "PENDING_MAX_CONNECTION_BYTES",
    "PENDING_MAX_PROCESS_BYTES",
    "PENDING_MAX_SECONDS",
    "PENDING_MAX_STREAMS",
    "ByteStreamLimits",
    "ByteStreamManager",
    "ByteStreamReader",
    "ByteStreamWriter",
    "EarlyDataBudget",
    "early_data_budget",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
PENDING_MAX_BYTES = 2 * 1024 * 1024
"""Early data kept for one substream."""
PENDING_MAX_CONNECTION_BYTES = 4 * 1024 * 1024
"""Early data kept for all the substreams of one connection."""
PENDING_MAX_STREAMS = 64
"""Substreams of one connection that may wait for a reader at once."""
PENDING_MAX_PROCESS_BYTES = 64 * 1024 * 1024
"""Early data kept for every connection of the process together (the default budget)."""
PENDING_MAX_SECONDS = 5.0
_FORGOTTEN_IDS = 1024


@dataclass(frozen=True, slots=True)
class ByteStreamLimits:
    """Caps on early data (data for a substream that has no reader yet), per connection."""

    max_bytes_per_stream: int = PENDING_MAX_BYTES
    max_bytes: int = PENDING_MAX_CONNECTION_BYTES
    max_streams: int = PENDING_MAX_STREAMS
    max_seconds: float = PENDING_MAX_SECONDS


class EarlyDataBudget:
    """Early data held by every connection of the process together, and what was refused.

    ``refused`` counts the substreams failed for early data, by reason: ``stream``,
    ``connection``, ``streams`` (too many waiting), ``process`` (this budget) and
    ``timeout`` (no reader within the time limit).
    """

    def __init__(self, limit: int = PENDING_MAX_PROCESS_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.refused: Counter[str] = Counter()

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) past the limit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        """Release bytes reserved with :meth:`take`."""
        self.used = max(0, self.used - size)


early_data_budget = EarlyDataBudget()
"""The process-wide early-data budget (set ``early_data_budget.limit`` to change it)."""


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
            await self._manager.session.drain()
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
        if self._done or not self._manager.session.is_open:
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


class _Pending:
    """Data for a substream whose reader does not exist yet."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.finished = False
        self.timer: asyncio.TimerHandle | None = None


class ByteStreamManager:
    """All substreams of one connection, both directions."""

    def __init__(
        self,
        session: SrpcSession,
        first_id: int,
        *,
        chunk_size: int = CHUNK_SIZE,
        reader_high_water: int = 1024 * 1024,
        limits: ByteStreamLimits | None = None,
        budget: EarlyDataBudget | None = None,
    ) -> None:
        limits = limits if limits is not None else ByteStreamLimits()
        self.session = session
        self.chunk_size = chunk_size
        self.reader_high_water = reader_high_water
        self.pending_max_bytes = limits.max_bytes_per_stream
        self.pending_max_total = limits.max_bytes
        self.pending_max_streams = limits.max_streams
        self.pending_max_seconds = limits.max_seconds
        self.budget = budget if budget is not None else early_data_budget
        self._next_id = first_id
        self._own_parity = first_id % 2
        self._writers: dict[int, ByteStreamWriter] = {}
        # Weak: a reader nobody holds any more is released by its finalizer.
        self._readers: weakref.WeakValueDictionary[int, ByteStreamReader] = (
            weakref.WeakValueDictionary()
        )
        self._pending: dict[int, _Pending] = {}
        self._pending_bytes = 0
        self._failed: OrderedDict[int, str] = OrderedDict()

    # --- API -------------------------------------------------------------------------

    def create_writer(self) -> ByteStreamWriter:
        """Open a new outgoing substream; send its ``stream_id`` to the peer in a call."""
        stream_id = self._next_id
        self._next_id += 2
        writer = ByteStreamWriter(self, stream_id)
        self._writers[stream_id] = writer
        return writer

    def open_reader(self, stream_id: int | None) -> ByteStreamReader:
        """The reader for a substream the peer writes (data that came early is kept).

        Raises ValueError for a missing id (None or 0) and for an id that already
        has a reader, as the TypeScript implementation does.
        """
        if not stream_id:
            raise ValueError("Missing stream ID")
        if stream_id in self._readers:
            raise ValueError(f"Stream {stream_id} already exists")
        reader = ByteStreamReader(self, stream_id)
        failed = self._failed.get(stream_id)
        if failed is not None:
            reader._fail(failed)
            return reader
        self._readers[stream_id] = reader
        # Tie the reader to the request handler opening it: if that handler fails,
        # the upload it was reading is refused (see release_owned).
        reader._owner = asyncio.current_task()
        reader._finalizer = weakref.finalize(
            reader, self._reader_dropped, stream_id, reader._room, asyncio.get_running_loop()
        )
        reader._finalizer.atexit = False  # at interpreter exit there is no one to tell
        pending = self._drop_pending(stream_id)
        if pending is not None:
            for chunk in pending.chunks:
                reader._feed(chunk)
            if pending.finished:
                reader._finish()
                self.forget_reader(stream_id)
        return reader

    def release_reader(self, reader: ByteStreamReader, error: str) -> None:
        """Give up a reader that is not finished: drop its data, tell the writer once."""
        if reader._is_over:
            return
        reader._fail(error)
        self.forget_reader(reader.stream_id)
        self._remember_failed(reader.stream_id, error)
        if self.session.is_open:
            self.send_op(reader.stream_id, "destroy", error=error)

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
        for stream_id in list(self._pending):
            self._drop_pending(stream_id)
        self._readers.clear()
        self._writers.clear()

    # --- internals -------------------------------------------------------------------

    def forget_writer(self, stream_id: int) -> None:
        self._writers.pop(stream_id, None)

    def forget_reader(self, stream_id: int) -> None:
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
        if stream_id in self._readers or stream_id in self._failed:
            return
        error = "receiver dropped"
        logger.info("%s: byte stream %d released: %s", self.session.label, stream_id, error)
        self._remember_failed(stream_id, error)
        if self.session.is_open:
            self.send_op(stream_id, "destroy", error=error)

    def send_op(self, stream_id: int, kind: str, **fields: Any) -> None:
        """Send one ``byteStreamOperation`` (write / finish / destroy)."""
        op_cls = self.session.protocol.outgoing.byte_stream_cls
        if op_cls is None:
            raise TypeError("this schema has no byteStreamOperation field")
        inner_cls = proto_meta(op_cls).cls_by_field[kind]
        inner = inner_cls(**{k: v for k, v in fields.items() if v is not None})
        op_factory: Any = op_cls
        op = op_factory(stream_id=stream_id, **{kind: inner})
        self.session.send(self.session.protocol.byte_stream_frame(op))

    def _remember_failed(self, stream_id: int, error: str) -> None:
        self._failed[stream_id] = error
        while len(self._failed) > _FORGOTTEN_IDS:
            self._failed.popitem(last=False)

    def _drop_pending(self, stream_id: int) -> _Pending | None:
        pending = self._pending.pop(stream_id, None)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            self._pending_bytes -= pending.size
            self.budget.give_back(pending.size)
        return pending

    def _fail_pending(self, stream_id: int, error: str, reason: str = "timeout") -> None:
        self._drop_pending(stream_id)
        self.budget.refused[reason] += 1
        logger.info("%s: byte stream %d failed: %s", self.session.label, stream_id, error)
        self._remember_failed(stream_id, error)
        if self.session.is_open:
            self.send_op(stream_id, "destroy", error=error)

    async def on_operation(self, op: betterproto2.Message) -> None:
        """Handle one received ``byteStreamOperation``."""
        fields: Any = op
        stream_id: int = fields.stream_id
        try:
            kind, inner = betterproto2.which_one_of(op, "operation")
        except RuntimeError:
            return
        if stream_id % 2 == self._own_parity:
            # About one of our writers: only destroy makes sense (the reader gave up).
            if kind == "destroy":
                writer = self._writers.pop(stream_id, None)
                if writer is not None:
                    writer._fail(getattr(inner, "error", None) or "destroyed by reader")
            return
        if stream_id in self._failed:
            return
        reader = self._readers.get(stream_id)
        if reader is not None:
            if kind == "write":
                reader._feed(getattr(inner, "chunk", b""))
                if not reader._room.is_set() and self.session.is_open:
                    # Wait on the event alone: holding the reader here would keep a
                    # dropped one alive, and with it this wait.
                    room = reader._room
                    del reader
                    await room.wait()
            elif kind == "finish":
                reader._finish()
                self.forget_reader(stream_id)
            elif kind == "destroy":
                reader._fail(getattr(inner, "error", None) or "destroyed by writer")
                self.forget_reader(stream_id)
            return
        self._keep_early(stream_id, kind, inner)

    def _keep_early(self, stream_id: int, kind: str, inner: Any) -> None:
        if kind == "destroy":
            # The writer gave up first: its reader will fail at once. Not answered.
            self._drop_pending(stream_id)
            self._remember_failed(stream_id, getattr(inner, "error", None) or "destroyed by writer")
            return
        pending = self._pending.get(stream_id)
        if pending is None:
            if len(self._pending) >= self.pending_max_streams:
                self._fail_pending(
                    stream_id, "too many byte streams waiting for a receiver", "streams"
                )
                return
            pending = self._pending[stream_id] = _Pending()
            pending.timer = asyncio.get_running_loop().call_later(
                self.pending_max_seconds,
                self._fail_pending,
                stream_id,
                "no receiver within the time limit",
            )
        if kind == "write":
            chunk: bytes = getattr(inner, "chunk", b"")
            size = len(chunk)
            if pending.size + size > self.pending_max_bytes:
                self._fail_pending(stream_id, "too much data before a receiver existed", "stream")
            elif self._pending_bytes + size > self.pending_max_total:
                self._fail_pending(
                    stream_id,
                    "too much data before a receiver existed on this connection",
                    "connection",
                )
            elif not self.budget.take(size):
                self._fail_pending(
                    stream_id,
                    "too much data before a receiver existed in this process",
                    "process",
                )
            else:
                pending.chunks.append(chunk)
                pending.size += size
                self._pending_bytes += size
        elif kind == "finish":
            pending.finished = True
