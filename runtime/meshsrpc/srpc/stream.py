"""A connected client as the server sees it: :class:`SrpcStream` and its observable ``meta``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, SupportsIndex

from .bytestream import ByteStreamReader, ByteStreamWriter
from .protocol import CloseCause

if TYPE_CHECKING:
    from .session import SrpcSession

__all__ = ["SrpcStream", "StreamMeta"]


class StreamMeta(dict[str, Any]):
    """``stream.meta``: a plain dict that calls ``on_change(meta)`` after every mutation.

    The mesh server uses the callback to sync the registry (it coalesces the calls
    itself, once per event-loop turn). Reads cost nothing extra.
    """

    on_change: Callable[[StreamMeta], None] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_change = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        super().__setitem__(key, default)
        self._changed()
        return default

    def pop(self, key: str, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self._changed()
        return value

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self._changed()
        return item

    def clear(self) -> None:
        had = bool(self)
        super().clear()
        if had:
            self._changed()

    def __ior__(self, other: Any) -> StreamMeta:  # type: ignore[override,misc]
        self.update(other)
        return self

    def replace(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Replace all entries at once (one change notification)."""
        super().clear()
        super().update(values)
        self._changed()

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        return (dict, (dict(self),))


class SrpcStream:
    """One client WebSocket on the server.

    ``id`` is the server's own uuid7 for the stream; ``client_stream_id`` the ``id``
    query parameter the client chose. ``connected_at`` and ``last_ping_at`` are epoch
    milliseconds, as on the wire.
    """

    def __init__(
        self,
        *,
        id: str,
        client_stream_id: str,
        client_id: str,
        app_version: str,
        address: str,
        configure_ts: int | None,
        protocol_version: int,
        supersede: bool,
        meta: StreamMeta,
        connected_at: int,
    ) -> None:
        self.id = id
        self.client_stream_id = client_stream_id
        self.client_id = client_id
        self.app_version = app_version
        self.address = address
        self.configure_ts = configure_ts
        self.protocol_version = protocol_version
        self.supersede = supersede
        self.meta = meta
        self.connected_at = connected_at
        self.is_activated = False
        """True once activated; stays True after close (tells whether it ever was)."""
        self.session: SrpcSession | None = None
        self._cleaned_up = False
        self._closed: asyncio.Event | None = None  # only once someone waits

    @property
    def last_ping_at(self) -> int | None:
        """Epoch ms of the client's last ping, or None before the first."""
        return self.session.protocol.last_ping_at if self.session is not None else None

    @property
    def is_open(self) -> bool:
        """True until the stream starts closing."""
        return self.session is not None and self.session.is_open

    @property
    def close_cause(self) -> CloseCause | None:
        """Why the stream closed (or is closing); None while open."""
        return self.session.close_cause if self.session is not None else None

    async def wait_closed(self) -> None:
        """Wait until the stream is closed and the server's cleanup (hooks, handlers) ran."""
        if self._cleaned_up:
            return
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    def create_byte_stream(self) -> ByteStreamWriter:
        """Open a byte stream to the client (ids 2, 4, 6, ...); pass its ``stream_id`` in a call."""
        return self._require_session().byte_streams.create_writer()

    def open_byte_stream(self, stream_id: int) -> ByteStreamReader:
        """The reader for the byte stream ``stream_id`` the client writes."""
        return self._require_session().byte_streams.open_reader(stream_id)

    def _require_session(self) -> SrpcSession:
        if self.session is None:
            raise RuntimeError("stream is not connected")
        return self.session

    def __repr__(self) -> str:
        return f"SrpcStream(id={self.id!r}, client_id={self.client_id!r}, address={self.address!r})"


def mark_cleaned_up(stream: SrpcStream) -> None:
    """The server's cleanup of ``stream`` has run: wake :meth:`SrpcStream.wait_closed`.

    A function of this module rather than a method, so that users of the stream do not
    see it; the serving code calls it.
    """
    stream._cleaned_up = True
    if stream._closed is not None:
        stream._closed.set()
