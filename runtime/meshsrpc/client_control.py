"""Asking a client's owner node to act on it (WIRE.md §3): ``kickClient`` after a supersede,
``updateMeta`` from any node, and ``opsKick`` from operators' tools."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from . import client_messages as messages
from ._tasks import call_sync_or_async, cancel_and_wait, spawn
from .mesh import MeshService
from .registry.metadata import encode_metadata
from .registry.registry import MeshClientRegistry

__all__ = [
    "ClientControl",
    "ClientKickFn",
    "ClientSupersededCallback",
    "ClientUpdateMetaFn",
]

logger = logging.getLogger("meshsrpc.client_service")

#: Applies new metadata to a local client (e.g. its stream's meta and the registry):
#: fn(client_id, metadata) -> True if the client was found; sync or async.
ClientUpdateMetaFn = Callable[[str, Any], Awaitable[bool] | bool]
#: On the node that lost a client to another node: cb(client_id); return False if
#: there was nothing to kick. Sync or async.
ClientSupersededCallback = Callable[[str], Any]
#: Disconnects a client held here on an operator's request: fn(client_id) -> True if
#: it was here. Sync or async.
ClientKickFn = Callable[[str], Awaitable[bool] | bool]


class ClientControl:
    """Both sides of ``kickClient``, ``updateMeta`` and ``opsKick``."""

    def __init__(
        self,
        mesh: MeshService,
        registry: Callable[[], MeshClientRegistry[Any]],
        is_running: Callable[[], bool],
        client_update_meta_fn: ClientUpdateMetaFn | None,
        *,
        key: str,
    ) -> None:
        self._mesh = mesh
        self._registry = registry
        self._is_running = is_running
        self._client_update_meta_fn = client_update_meta_fn
        self._key = key
        self.superseded_callbacks: list[ClientSupersededCallback] = []
        self.kick_fn: ClientKickFn | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        mesh.register_handler(messages.KICK_CLIENT, self._serve_kick_client)
        mesh.register_handler(messages.UPDATE_META, self._serve_update_meta)
        mesh.register_handler(messages.OPS_KICK, self._serve_ops_kick)

    async def stop(self) -> None:
        """Cancel the kicks still on their way."""
        await cancel_and_wait(self._tasks)

    # --- the caller's side -------------------------------------------------------------

    def kick_old_owner(self, client_id: str, old_node: int | None) -> None:
        """Tell the node the client was superseded from to close its stream."""
        if old_node is None or old_node == self._mesh.instance_id:
            return
        # In the background: a dead old owner must not hold up the new connection.
        spawn(self._send_kick(client_id, old_node), self._tasks)

    async def _send_kick(self, client_id: str, node_id: int) -> None:
        try:
            reply = await self._mesh.invoke(
                node_id, messages.KICK_CLIENT, messages.kick_client(client_id)
            )
        except Exception as exc:
            logger.warning("could not tell node %d to kick client %r: %s", node_id, client_id, exc)
            return
        logger.debug("node %d kicked client %r: %r", node_id, client_id, reply)

    async def update_metadata(self, client_id: str, metadata: Any) -> bool:
        """Give a client new metadata on whichever node owns it (see
        :meth:`MeshClientService.update_client_metadata`)."""
        encode_metadata(metadata)  # fail here, not on the owner
        if not self._is_running():
            return False
        client = await self._registry().get_client(client_id)
        if client is None:
            return False
        if client.node_id == self._mesh.instance_id:
            return await self._apply_metadata(client_id, metadata)
        reply = await self._mesh.invoke(
            client.node_id, messages.UPDATE_META, messages.update_meta(client_id, metadata)
        )
        return messages.parse_update_meta_reply(reply)

    # --- the owner's side: mesh handlers -----------------------------------------------

    async def _serve_kick_client(self, data: Any) -> dict[str, Any]:
        client_id = messages.parse_kick_client(data)
        if client_id is None:
            return messages.kick_reply(False)
        kicked = False
        for callback in list(self.superseded_callbacks):
            try:
                result = await call_sync_or_async(callback, client_id)
            except Exception:
                logger.exception("on_client_superseded callback failed for %r", client_id)
                continue
            kicked = kicked or result is not False
        return messages.kick_reply(kicked)

    async def _serve_ops_kick(self, data: Any) -> dict[str, Any]:
        client_id = messages.parse_kick_client(data)
        if client_id is None or self.kick_fn is None:
            return messages.kick_reply(False)
        kicked = bool(await call_sync_or_async(self.kick_fn, client_id))
        logger.info(
            "operator kick of client %s: %s",
            client_id,
            "disconnected" if kicked else "not here",
            extra={
                "mesh_key": self._key,
                "node_id": self._mesh.instance_id,
                "client_id": client_id,
            },
        )
        return messages.kick_reply(kicked)

    async def _serve_update_meta(self, data: Any) -> dict[str, Any]:
        request = messages.parse_update_meta(data)
        if not self._is_running() or request is None:
            return messages.update_meta_reply(False)
        updated = await self._apply_metadata(request.client_id, request.metadata)
        return messages.update_meta_reply(updated)

    async def _apply_metadata(self, client_id: str, metadata: Any) -> bool:
        if self._client_update_meta_fn is not None:
            return bool(await call_sync_or_async(self._client_update_meta_fn, client_id, metadata))
        return await self._registry().update_metadata(client_id, metadata)
