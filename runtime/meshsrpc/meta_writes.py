"""Writes a client's new metadata to the registry, in the client's registry queue.

Two ways in: a change of the stream's ``meta`` (seen by :class:`MetaSync`), and
``update_client_metadata`` arriving on the owning node (merged into ``stream.meta``,
then written once). Before activation nothing is written: the reservation or the
activation itself carries the metadata.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._serial import KeyedSerialQueue
from .lifecycle import ClientTable
from .meta_sync import MetaSync, snapshot
from .srpc.stream import SrpcStream

if TYPE_CHECKING:
    from .client_service import MeshClientService
    from .srpc.server import SrpcServer

__all__ = ["MetaWrites"]

logger = logging.getLogger("meshsrpc.mesh_server")


class MetaWrites:
    """The metadata half of a node's registrar: its :class:`MetaSync` and the writes."""

    def __init__(
        self,
        server: SrpcServer[Any, Any],
        service: MeshClientService[Any],
        table: ClientTable,
        steps: KeyedSerialQueue,
        *,
        extract_metadata: Callable[[SrpcStream], Any] | None,
        is_current: Callable[[SrpcStream], bool],
        is_running: Callable[[], bool],
    ) -> None:
        self._server = server
        self._service = service
        self._table = table
        self._steps = steps
        self._is_current = is_current
        self._is_running = is_running
        self.sync = MetaSync(table, extract_metadata, is_current, self._changed)

    def _changed(self, stream: SrpcStream, metadata: Any) -> None:
        # Before activation the reservation/activation itself carries the metadata.
        if self._table.is_gated(stream) and self._is_running():
            step = functools.partial(self._write_logged, stream, metadata)
            self._steps.submit(stream.client_id, step)

    async def _write(self, stream: SrpcStream, metadata: Any) -> bool:
        if not self._is_current(stream) or not self._is_running():
            return False
        return await self._service.client_registry.update_metadata(stream.client_id, metadata)

    async def _write_logged(self, stream: SrpcStream, metadata: Any) -> None:
        try:
            await self._write(stream, metadata)
        except Exception:
            logger.exception("could not sync the metadata of client %r", stream.client_id)

    async def apply(self, client_id: str, metadata: Any) -> bool:
        """MeshClientService's ``client_update_meta_fn``: runs on the owning node."""
        stream = self._server.streams_by_client_id.get(client_id)
        entry = self._table.client(client_id)
        if stream is None or not stream.is_activated or not stream.is_open or entry is None:
            return False
        previous = entry.metadata
        if isinstance(metadata, Mapping):
            # Merging notifies the meta watcher; setting the table first makes its sync
            # see no change, so the registry is written once, below.
            _merge(stream.meta, metadata)
            new = self.sync.take_snapshot(stream)
        else:
            new = snapshot(metadata)
            self._table.remember(stream, new)
        step = functools.partial(self._write, stream, new)
        try:
            updated = await asyncio.shield(self._steps.submit(client_id, step))
        except Exception:
            logger.exception("could not update the metadata of client %r", client_id)
            updated = False
        entry = self._table.client(client_id)
        if not updated and entry is not None and entry.metadata is new:
            self._table.remember(stream, previous)
        return updated


def _merge(meta: dict[str, Any], update: Mapping[str, Any]) -> None:
    """update_client_metadata's merge: None deletes a key (JSON has no "absent" value)."""
    for key, value in update.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
