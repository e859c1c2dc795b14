"""Byte streams: binary substreams multiplexed over one SRPC connection (WIRE.md §4).

The side that writes picks the id: the server numbers its substreams 2, 4, 6, ...,
the client 1, 3, 5, .... The id travels inside an ordinary call (for example
``uUploadRequest.streamId``), so data may arrive before the receiving side has
created its reader: it is buffered, up to 2 MiB for up to 5 s, then the substream
fails and the writer is told so with ``destroy``.

Writing waits while the connection's send buffer is full (backpressure); a reader that
falls behind by more than ``reader_high_water`` bytes pauses the connection's receive
loop until it catches up, which pushes back on the writer through TCP. While paused,
nothing else is received on that connection either, so read a byte stream in a task
that does not wait for another reply on the same connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
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
    "PENDING_MAX_SECONDS",
    "ByteStreamManager",
    "ByteStreamReader",
    "ByteStreamWriter",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
PENDING_MAX_BYTES = 2 * 1024 * 1024
PENDING_MAX_SECONDS = 5.0
_FORGOTTEN_IDS = 1024


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
        """Abort the substream; the reader fails with ``error``."""
        if self._done:
            return
        self._done = True
        self._manager.send_op(self.stream_id, "destroy", error=error)
        self._manager.forget_writer(self.stream_id)

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
    """The receiving end of a substream: ``async for chunk in reader`` or ``await read()``."""

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
        if self._finished or self._error is not None:
            return
        self._fail(error or "destroyed by reader")
        self._manager.send_op(self.stream_id, "destroy", error=error)
        self._manager.forget_reader(self.stream_id)

    # --- fed by the manager ----------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        if self._finished or self._error is not None:
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

    async def _wait_for_room(self) -> None:
        await self._room.wait()


class _Pending:
    """Data for a substream whose reader does not exist yet."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.finished = False
        self.error: str | None = None
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
        pending_max_bytes: int = PENDING_MAX_BYTES,
        pending_max_seconds: float = PENDING_MAX_SECONDS,
    ) -> None:
        self.session = session
        self.chunk_size = chunk_size
        self.reader_high_water = reader_high_water
        self.pending_max_bytes = pending_max_bytes
        self.pending_max_seconds = pending_max_seconds
        self._next_id = first_id
        self._own_parity = first_id % 2
        self._writers: dict[int, ByteStreamWriter] = {}
        self._readers: dict[int, ByteStreamReader] = {}
        self._pending: dict[int, _Pending] = {}
        self._failed: OrderedDict[int, str] = OrderedDict()

    # --- API -------------------------------------------------------------------------

    def create_writer(self) -> ByteStreamWriter:
        """Open a new outgoing substream; send its ``stream_id`` to the peer in a call."""
        stream_id = self._next_id
        self._next_id += 2
        writer = ByteStreamWriter(self, stream_id)
        self._writers[stream_id] = writer
        return writer

    def open_reader(self, stream_id: int) -> ByteStreamReader:
        """The reader for a substream the peer writes (data that came early is kept)."""
        if stream_id in self._readers:
            return self._readers[stream_id]
        reader = ByteStreamReader(self, stream_id)
        failed = self._failed.pop(stream_id, None)
        if failed is not None:
            reader._fail(failed)
            return reader
        self._readers[stream_id] = reader
        pending = self._pending.pop(stream_id, None)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            for chunk in pending.chunks:
                reader._feed(chunk)
            if pending.error is not None:
                reader._fail(pending.error)
                self.forget_reader(stream_id)
            elif pending.finished:
                reader._finish()
                self.forget_reader(stream_id)
        return reader

    def fail_all(self, error: str) -> None:
        """The connection ended: every open substream fails."""
        for reader in self._readers.values():
            reader._fail(error)
        for writer in self._writers.values():
            writer._fail(error)
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._readers.clear()
        self._writers.clear()
        self._pending.clear()

    # --- internals -------------------------------------------------------------------

    def forget_writer(self, stream_id: int) -> None:
        self._writers.pop(stream_id, None)

    def forget_reader(self, stream_id: int) -> None:
        self._readers.pop(stream_id, None)

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

    def _fail_pending(self, stream_id: int, error: str) -> None:
        pending = self._pending.pop(stream_id, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
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
                await reader._wait_for_room()
            elif kind == "finish":
                reader._finish()
                self.forget_reader(stream_id)
            elif kind == "destroy":
                reader._fail(getattr(inner, "error", None) or "destroyed by writer")
                self.forget_reader(stream_id)
            return
        pending = self._pending.get(stream_id)
        if pending is None:
            pending = self._pending[stream_id] = _Pending()
            pending.timer = asyncio.get_running_loop().call_later(
                self.pending_max_seconds,
                self._fail_pending,
                stream_id,
                "no receiver within the time limit",
            )
        if kind == "write":
            chunk: bytes = getattr(inner, "chunk", b"")
            pending.chunks.append(chunk)
            pending.size += len(chunk)
            if pending.size > self.pending_max_bytes:
                self._fail_pending(stream_id, "too much data before a receiver existed")
        elif kind == "finish":
            pending.finished = True
        elif kind == "destroy":
            pending.error = getattr(inner, "error", None) or "destroyed by writer"
