"""The presence app's server: who is online, on which node, with which status.

Run one node per process; they find each other through Redis. Nodes and clients
share the secret clients sign their connections with (without one, a node refuses
every connection)::

    export SRPC_AUTH_SECRET=change-me MESH_REDIS_URL=redis://127.0.0.1:6379/0
    python -m examples.presence.server --port 8001
    python -m examples.presence.server --port 8002

Every node keeps a presence table fed by ``presenceChanged`` broadcasts: the node a
client connects to announces it, the node it leaves from announces that, and the
mesh leader announces the clients of a node that died.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import meshsrpc.loops
from meshsrpc import ClientNotFoundError, RegisteredClient, SrpcError, SrpcStream

from .generated.presence import (
    DNotifyRequest,
    PresenceEntry,
    Status,
    USendDirectRequest,
    USendDirectResponse,
    USetStatusRequest,
    USetStatusResponse,
    UWhoIsOnlineRequest,
    UWhoIsOnlineResponse,
)
from .generated.presence_srpc import (
    AnnouncementDict,
    ClientMetaDict,
    PresenceChangedDict,
    PresenceMeshSrpcServer,
)

__all__ = ["PresenceRecord", "PresenceServer", "main"]

logger = logging.getLogger("presence")

Listener = Callable[[str, dict[str, Any]], None]
"""Observer of what happens on a node: ``listener(kind, fields)``."""


@dataclass
class PresenceRecord:
    """One row of a node's presence table."""

    client_id: str
    node_id: int
    online: bool
    since_ms: int
    reason: str = ""


def _now_ms() -> int:
    return int(time.time() * 1000)


def status_name(status: Status) -> str:
    """``Status.BUSY`` → ``"busy"``, the form kept in the registry metadata."""
    return Status(status).name.lower().removeprefix("status_")


class PresenceServer(PresenceMeshSrpcServer):
    """A presence node: SRPC handlers, mesh callbacks and a presence table."""

    def __init__(self, *, mesh_key: str = "presence", **kwargs: Any) -> None:
        super().__init__(mesh_key=mesh_key, **kwargs)
        self.presence: dict[str, PresenceRecord] = {}
        self.listeners: list[Listener] = []
        self.on_client_connected(self._client_connected)
        self.on_client_disconnected(self._client_disconnected)
        self.on_node_clients_orphaned(self._clients_orphaned)

    # --- upstream calls (the client invokes, this node answers) ---

    async def handle_u_set_status(
        self, stream: SrpcStream, request: USetStatusRequest
    ) -> USetStatusResponse:
        """Change the caller's status; writing stream.meta syncs the registry."""
        if request.status == Status.UNSPECIFIED:
            raise SrpcError("status is required", is_user_error=True)
        stream.meta["status"] = status_name(request.status)
        return USetStatusResponse(status=stream.meta["status"])

    async def handle_u_who_is_online(
        self, stream: SrpcStream, request: UWhoIsOnlineRequest
    ) -> UWhoIsOnlineResponse:
        """Everyone in the registry, whichever node they are on."""
        clients = await self.client_registry.list_clients()
        return UWhoIsOnlineResponse(entries=[_entry(c) for c in clients])

    async def handle_u_send_direct(
        self, stream: SrpcStream, request: USendDirectRequest
    ) -> USendDirectResponse:
        """Deliver a text to another client, on whatever node it is connected to."""
        try:
            reply = await self.invoke_d_notify(
                request.to_client_id,
                DNotifyRequest(
                    from_client_id=stream.client_id,
                    text=request.text,
                    sent_from_node=self.mesh_instance_id,
                ),
                timeout=5.0,
            )
        except ClientNotFoundError:
            raise SrpcError(f"{request.to_client_id} is offline", is_user_error=True) from None
        # Asked after the call: before it, a client still connecting is not listed yet.
        owner = await self.client_registry.get_client(request.to_client_id)
        return USendDirectResponse(
            delivered=reply.acknowledged, delivered_by_node=owner.node_id if owner else 0
        )

    # --- broadcasts (every node receives them) ---

    async def on_broadcast_presence_changed(
        self, data: PresenceChangedDict, sender_instance_id: int
    ) -> None:
        """Keep this node's presence table in step with the whole mesh."""
        self.presence[data["clientId"]] = PresenceRecord(
            client_id=data["clientId"],
            node_id=data["nodeId"],
            online=data["online"],
            since_ms=_now_ms(),
            reason=data.get("reason", ""),
        )

    async def on_broadcast_announcement(
        self, data: AnnouncementDict, sender_instance_id: int
    ) -> None:
        """An announcement for everyone: note it, and show it to this node's clients."""
        self._emit("announcement", text=data["text"], sender=sender_instance_id)
        for client_id in list(self.streams_by_client_id):
            with contextlib.suppress(Exception):
                await self.invoke_d_notify(
                    client_id,
                    DNotifyRequest(
                        from_client_id="", text=data["text"], sent_from_node=data["fromNode"]
                    ),
                    timeout=2.0,
                )

    # --- mesh callbacks ---

    async def _client_connected(self, client_id: str, metadata: ClientMetaDict) -> None:
        self._emit("connected", clientId=client_id, metadata=dict(metadata or {}))
        await self.broadcast_presence_changed(
            {"clientId": client_id, "online": True, "nodeId": self.mesh_instance_id}
        )

    async def _client_disconnected(self, client_id: str, metadata: ClientMetaDict) -> None:
        self._emit("disconnected", clientId=client_id)
        await self.broadcast_presence_changed(
            {
                "clientId": client_id,
                "online": False,
                "nodeId": self.mesh_instance_id,
                "reason": "left",
            }
        )

    async def _clients_orphaned(
        self, node_id: int, clients: list[RegisteredClient[ClientMetaDict]]
    ) -> None:
        # Runs on the mesh leader only, once per dead node, with the clients that did
        # not reconnect elsewhere: the one place that can tell the others they are gone.
        self._emit("orphaned", deadNode=node_id, clients=sorted(c.client_id for c in clients))
        for client in clients:
            await self.broadcast_presence_changed(
                {
                    "clientId": client.client_id,
                    "online": False,
                    "nodeId": node_id,
                    "reason": f"node {node_id} died",
                }
            )

    def _emit(self, kind: str, **fields: Any) -> None:
        for listener in self.listeners:
            listener(kind, fields)


def _entry(client: RegisteredClient[ClientMetaDict]) -> PresenceEntry:
    meta: ClientMetaDict | dict[str, str] = client.metadata or {}
    return PresenceEntry(
        client_id=client.client_id,
        display_name=meta.get("displayName", client.client_id),
        status=meta.get("status", ""),
        node_id=client.node_id,
        connected_at=client.connected_at,
    )


async def serve(host: str, port: int, **kwargs: Any) -> None:
    """Run one node until SIGINT/SIGTERM."""
    server = PresenceServer(**kwargs)
    await server.listen(host, port)
    async with server:  # joins the mesh; leaves it and closes the server on the way out
        logger.info("node %d on ws://%s:%d/srpc", server.mesh_instance_id, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    """``python -m examples.presence.server --port 8001`` (Redis from MESH_REDIS_URL)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--redis", default=None, help="URL; default: MESH_REDIS_URL etc.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    meshsrpc.loops.run(serve(args.host, args.port, redis=args.redis))


if __name__ == "__main__":
    main()
