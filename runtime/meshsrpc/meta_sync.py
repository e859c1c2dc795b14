"""Keeps a client's registry metadata in step with its ``stream.meta``.

A :class:`MetaSync` watches every stream's :class:`StreamMeta`; however many keys change
in one turn of the loop, it extracts the metadata once, and hands it on only when it
differs from what the client table already knows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .lifecycle import ClientTable
from .srpc.stream import SrpcStream, StreamMeta

__all__ = ["MetaChanged", "MetaSync", "snapshot"]

logger = logging.getLogger("meshsrpc.mesh_server")

#: changed(stream, metadata): the client's metadata differs from what the table knew
#: (the table already holds the new value).
MetaChanged = Callable[[SrpcStream, Any], None]


def snapshot(value: Any) -> Any:
    """A copy that later mutations of the source cannot change (one level deep)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _differs(old: Any, new: Any) -> bool:
    return type(old) is not type(new) or old != new


class MetaSync:
    """Extracts clients' metadata and follows the changes of their ``stream.meta``."""

    def __init__(
        self,
        table: ClientTable,
        extract: Callable[[SrpcStream], Any] | None,
        is_current: Callable[[SrpcStream], bool],
        changed: MetaChanged,
    ) -> None:
        self._table = table
        self._extract_fn = extract
        self._is_current = is_current
        self._changed = changed

    def extract(self, stream: SrpcStream) -> Any:
        """The stream's registry metadata (default: a snapshot of ``stream.meta``)."""
        if self._extract_fn is None:
            return dict(stream.meta)
        return snapshot(self._extract_fn(stream))

    def take_snapshot(self, stream: SrpcStream) -> Any:
        """Extract the stream's metadata and remember it as the client's."""
        metadata = self.extract(stream)
        self._table.remember(stream, metadata)
        return metadata

    def watch(self, stream: SrpcStream) -> None:
        """Follow ``stream.meta`` (once; a stream already watched is left as it is)."""
        meta = stream.meta
        if isinstance(meta, StreamMeta) and not self._is_ours(meta):
            meta.on_change = functools.partial(self._schedule, stream)

    def unwatch(self, stream: SrpcStream) -> None:
        """Stop following ``stream.meta`` (the stream closed)."""
        meta = stream.meta
        if isinstance(meta, StreamMeta) and self._is_ours(meta):
            meta.on_change = None

    def _is_ours(self, meta: StreamMeta) -> bool:
        watch = meta.on_change
        return isinstance(watch, functools.partial) and watch.func == self._schedule

    def _schedule(self, stream: SrpcStream, _meta: StreamMeta) -> None:
        state = self._table.stream(stream)
        if state is None or state.sync_scheduled:
            return
        state.sync_scheduled = True
        asyncio.get_running_loop().call_soon(self._sync, stream)

    def _sync(self, stream: SrpcStream) -> None:
        state = self._table.stream(stream)
        if state is not None:
            state.sync_scheduled = False
        if not self._is_current(stream):
            return
        try:
            metadata = self.extract(stream)
        except Exception:
            logger.exception("extract_metadata failed for %r", stream.client_id)
            return
        entry = self._table.client(stream.client_id)
        if entry is not None and not _differs(entry.metadata, metadata):
            return
        self._table.remember(stream, metadata)
        self._changed(stream, metadata)
