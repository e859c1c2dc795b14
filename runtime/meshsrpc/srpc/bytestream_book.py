"""Byte-stream bookkeeping without I/O: substream ids, early data and its expiry (WIRE.md §4).

:class:`ByteStreamBook` knows, for one connection, which substreams we write, which
ones have a reader, which failed, and the data that came for a substream before its
reader existed ("early data", kept within budgets until a deadline). It takes the
received operations and the time (``now``, any monotonic clock in seconds) and returns
events; the asyncio layer (``bytestream.py``) applies them to its reader and writer
objects, sends the ``destroy`` frames they ask for and arms one timer at
:meth:`ByteStreamBook.next_deadline` to call :meth:`ByteStreamBook.expire`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "CHUNK_SIZE",
    "PENDING_MAX_BYTES",
    "PENDING_MAX_CONNECTION_BYTES",
    "PENDING_MAX_PROCESS_BYTES",
    "PENDING_MAX_SECONDS",
    "PENDING_MAX_STREAMS",
    "BookEvent",
    "ByteStreamBook",
    "ByteStreamLimits",
    "ChunkReceived",
    "EarlyData",
    "EarlyDataBudget",
    "EarlyDataRefused",
    "ReaderEnded",
    "WriterRefused",
    "early_data_budget",
]

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


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkReceived:
    """Data for a substream that has a reader."""

    stream_id: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class ReaderEnded:
    """The writer finished (``error`` None) or destroyed a substream that has a reader."""

    stream_id: int
    error: str | None


@dataclass(frozen=True, slots=True)
class WriterRefused:
    """The peer's reader destroyed one of our substreams: its writer fails with ``error``."""

    stream_id: int
    error: str


@dataclass(frozen=True, slots=True)
class EarlyDataRefused:
    """Early data over a cap or past its deadline: the substream failed; tell the writer.

    ``reason`` is the :attr:`EarlyDataBudget.refused` key.
    """

    stream_id: int
    error: str
    reason: str


BookEvent: TypeAlias = ChunkReceived | ReaderEnded | WriterRefused | EarlyDataRefused


@dataclass(slots=True)
class EarlyData:
    """What a new reader starts with: data that came early, and how the substream stands."""

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    finished: bool = False
    error: str | None = None
    """Set when the substream failed before the reader was opened."""
    deadline: float = 0.0


class ByteStreamBook:
    """The substreams of one connection, as ids and early data; no I/O, no clock."""

    def __init__(
        self,
        first_id: int,
        limits: ByteStreamLimits | None = None,
        budget: EarlyDataBudget | None = None,
    ) -> None:
        limits = limits if limits is not None else ByteStreamLimits()
        self.max_bytes_per_stream = limits.max_bytes_per_stream
        self.max_bytes = limits.max_bytes
        self.max_streams = limits.max_streams
        self.max_seconds = limits.max_seconds
        self.budget = budget if budget is not None else early_data_budget
        self._next_id = first_id
        self._own_parity = first_id % 2
        self._writers: set[int] = set()
        self._readers: set[int] = set()
        self._pending: dict[int, EarlyData] = {}
        self._pending_bytes = 0
        self._failed: OrderedDict[int, str] = OrderedDict()

    # --- what is known ------------------------------------------------------------------

    @property
    def writers(self) -> frozenset[int]:
        """Our open substreams."""
        return frozenset(self._writers)

    @property
    def readers(self) -> frozenset[int]:
        """The peer's substreams that have a reader."""
        return frozenset(self._readers)

    @property
    def waiting(self) -> frozenset[int]:
        """The peer's substreams holding early data (no reader yet)."""
        return frozenset(self._pending)

    @property
    def early_bytes(self) -> int:
        """Early data held for this connection."""
        return self._pending_bytes

    def failure(self, stream_id: int) -> str | None:
        """Why the peer's substream ``stream_id`` failed (the last 1024 are remembered)."""
        return self._failed.get(stream_id)

    # --- our side -----------------------------------------------------------------------

    def new_writer(self) -> int:
        """The id for a new outgoing substream."""
        stream_id = self._next_id
        self._next_id += 2
        self._writers.add(stream_id)
        return stream_id

    def writer_closed(self, stream_id: int) -> None:
        """Our substream ended (finished or destroyed by us)."""
        self._writers.discard(stream_id)

    def open_reader(self, stream_id: int | None) -> EarlyData:
        """A reader for the peer's ``stream_id`` starts; what it starts with.

        ValueError for a missing id (None or 0) and for an id that already has a
        reader, as the TypeScript implementation does. A substream that failed, or
        that is already finished, is not kept as open.
        """
        if not stream_id:
            raise ValueError("Missing stream ID")
        if stream_id in self._readers:
            raise ValueError(f"Stream {stream_id} already exists")
        failed = self._failed.get(stream_id)
        if failed is not None:
            return EarlyData(error=failed)
        early = self._drop_pending(stream_id)
        if early is None:
            early = EarlyData()
        if not early.finished:
            self._readers.add(stream_id)
        return early

    def release_reader(self, stream_id: int, error: str) -> bool:
        """Our reader gives up unfinished; True when the writer is to be told (``destroy``)."""
        if stream_id not in self._readers:
            return False
        self._readers.discard(stream_id)
        self._remember_failed(stream_id, error)
        return True

    def close(self) -> None:
        """The connection ended: forget every substream and give back the early data."""
        for stream_id in list(self._pending):
            self._drop_pending(stream_id)
        self._readers.clear()
        self._writers.clear()

    # --- the peer's operations ----------------------------------------------------------

    def receive(
        self,
        stream_id: int,
        kind: str,
        now: float,
        *,
        chunk: bytes = b"",
        error: str | None = None,
    ) -> list[BookEvent]:
        """One received operation (``write``, ``finish`` or ``destroy``) at ``now``."""
        if stream_id % 2 == self._own_parity:
            # About one of our writers: only destroy makes sense (the reader gave up).
            if kind == "destroy" and stream_id in self._writers:
                self._writers.discard(stream_id)
                return [WriterRefused(stream_id, error or "destroyed by reader")]
            return []
        if stream_id in self._failed:
            return []
        if stream_id in self._readers:
            if kind == "write":
                return [ChunkReceived(stream_id, chunk)]
            if kind == "finish":
                self._readers.discard(stream_id)
                return [ReaderEnded(stream_id, None)]
            if kind == "destroy":
                self._readers.discard(stream_id)
                return [ReaderEnded(stream_id, error or "destroyed by writer")]
            return []
        return self._keep_early(stream_id, kind, now, chunk, error)

    def _keep_early(
        self, stream_id: int, kind: str, now: float, chunk: bytes, error: str | None
    ) -> list[BookEvent]:
        if kind == "destroy":
            # The writer gave up first: its reader will fail at once. Not answered.
            self._drop_pending(stream_id)
            self._remember_failed(stream_id, error or "destroyed by writer")
            return []
        pending = self._pending.get(stream_id)
        if pending is None:
            if len(self._pending) >= self.max_streams:
                return self._refuse(
                    stream_id, "too many byte streams waiting for a receiver", "streams"
                )
            pending = self._pending[stream_id] = EarlyData(deadline=now + self.max_seconds)
        if kind == "finish":
            pending.finished = True
            return []
        if kind != "write":
            return []
        size = len(chunk)
        if pending.size + size > self.max_bytes_per_stream:
            return self._refuse(stream_id, "too much data before a receiver existed", "stream")
        if self._pending_bytes + size > self.max_bytes:
            return self._refuse(
                stream_id,
                "too much data before a receiver existed on this connection",
                "connection",
            )
        if not self.budget.take(size):
            return self._refuse(
                stream_id, "too much data before a receiver existed in this process", "process"
            )
        pending.chunks.append(chunk)
        pending.size += size
        self._pending_bytes += size
        return []

    # --- time ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When early data next expires (None: nothing waits)."""
        if not self._pending:
            return None
        return min(pending.deadline for pending in self._pending.values())

    def expire(self, now: float) -> list[BookEvent]:
        """Fail the substreams whose reader did not come by their deadline."""
        due = [sid for sid, pending in self._pending.items() if pending.deadline <= now]
        events: list[BookEvent] = []
        for stream_id in due:
            events += self._refuse(stream_id, "no receiver within the time limit", "timeout")
        return events

    # --- internals ----------------------------------------------------------------------

    def _refuse(self, stream_id: int, error: str, reason: str) -> list[BookEvent]:
        self._drop_pending(stream_id)
        self.budget.refused[reason] += 1
        self._remember_failed(stream_id, error)
        return [EarlyDataRefused(stream_id, error, reason)]

    def _remember_failed(self, stream_id: int, error: str) -> None:
        self._failed[stream_id] = error
        while len(self._failed) > _FORGOTTEN_IDS:
            self._failed.popitem(last=False)

    def _drop_pending(self, stream_id: int) -> EarlyData | None:
        pending = self._pending.pop(stream_id, None)
        if pending is not None:
            self._pending_bytes -= pending.size
            self.budget.give_back(pending.size)
        return pending
