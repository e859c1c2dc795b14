"""Broadcasts: one message to the handler of its type on every node of the mesh.

The sender's own handler runs directly (unless ``skip_self``); its copy coming back
from the channel is ignored. Handler errors are logged, never returned to the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import mesh_messages as messages
from ._tasks import call_sync_or_async, raise_if_cancelling, spawn
from .errors import MeshError
from .mesh_node import NodeState

__all__ = ["BroadcastHandler", "MeshBroadcasts"]

logger = logging.getLogger("meshsrpc.mesh")

#: A broadcast handler: handler(data, sender_instance_id), sync or async.
BroadcastHandler = Callable[[Any, int], Any]


class MeshBroadcasts:
    """One node's broadcast handlers, and its broadcasts."""

    def __init__(self, node: NodeState) -> None:
        self._node = node
        self.handlers: dict[str, BroadcastHandler] = {}

    async def broadcast(self, type: str, data: Any, *, skip_self: bool) -> None:
        """Send ``data`` to every node's ``type`` handler (see :meth:`MeshService.broadcast`)."""
        node = self._node
        engine = node.running_engine()
        sender = node.instance_id
        payload = messages.broadcast(sender, type, data)
        try:
            await engine.publish_broadcast(payload)
        except Exception as exc:
            raise_if_cancelling()
            raise MeshError(f"could not broadcast {type!r}: {exc}") from exc
        if node.observer is not None:
            node.observer.mesh_message_out("broadcast")
        if not skip_self:
            handler = self.handlers.get(type)
            if handler is not None:
                await self._run_handler(handler, type, data, sender)

    def on_broadcast(self, message: messages.Broadcast) -> None:
        """A broadcast from the channel: run its handler in a task."""
        node = self._node
        if message.sender == node.instance_id:
            return  # our own copy: delivered locally when it was sent
        handler = self.handlers.get(message.type)
        if handler is None:
            logger.debug("mesh %s: no broadcast handler for %r", node.key, message.type)
            return
        spawn(self._run_handler(handler, message.type, message.data, message.sender), node.tasks)

    async def _run_handler(
        self, handler: BroadcastHandler, type: str, data: Any, sender: int
    ) -> None:
        try:
            await call_sync_or_async(handler, data, sender)
        except Exception:
            raise_if_cancelling()
            logger.exception("mesh %s: broadcast handler for %r failed", self._node.key, type)
