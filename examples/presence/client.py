"""The presence app's client: connect, set a status, see who is online, get notified.

::

    python -m examples.presence.client --url ws://127.0.0.1:8001/srpc --id alice
    python -m examples.presence.client --url ws://127.0.0.1:8002/srpc --id bob --send alice:hi
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Unpack

import meshsrpc.loops
from meshsrpc.srpc.options import SrpcClientOptions

from .generated.presence import (
    DGetStatusRequest,
    DGetStatusResponse,
    DNotifyRequest,
    DNotifyResponse,
    Status,
    USendDirectRequest,
    USetStatusRequest,
    UWhoIsOnlineRequest,
)
from .generated.presence_srpc import ClientMetaDict, PresenceSrpcClient

__all__ = ["PresenceClient", "main"]


class PresenceClient(PresenceSrpcClient):
    """A user's connection: answers the server's dNotify and dGetStatus calls."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        display_name: str | None = None,
        status: Status = Status.AVAILABLE,
        device: str | None = None,
        **kwargs: Unpack[SrpcClientOptions],
    ) -> None:
        meta: ClientMetaDict = {
            "displayName": display_name or client_id.title(),
            "status": _name(status),
        }
        if device:
            meta["device"] = device
        # Signed with the nodes' shared secret (SRPC_AUTH_SECRET) when one is set.
        kwargs.setdefault("client_secret", os.environ.get("SRPC_AUTH_SECRET") or None)
        super().__init__(url, client_id, client_meta=meta, **kwargs)
        self.status = status
        self.notifications: list[DNotifyRequest] = []
        self.disconnect_causes: list[str] = []
        self.register_disconnect_handler(self.disconnect_causes.append)

    async def handle_d_notify(self, request: DNotifyRequest) -> DNotifyResponse:
        """Show a notification (here: remember it) and acknowledge it."""
        self.notifications.append(request)
        return DNotifyResponse(acknowledged=True)

    async def handle_d_get_status(self, request: DGetStatusRequest) -> DGetStatusResponse:
        """Tell the server this client's own view of its status."""
        return DGetStatusResponse(status=self.status, client_time_ms=int(time.time() * 1000))

    async def set_status(self, status: Status) -> str:
        """Change the status on the server (and so in the registry on every node)."""
        self.status = status
        reply = await self.invoke_u_set_status(USetStatusRequest(status=status))
        return reply.status


def _name(status: Status) -> str:
    return Status(status).name.lower().removeprefix("status_")


async def run(url: str, client_id: str, send: str | None, linger: float) -> None:
    """Connect, print who is online, optionally send a direct message, wait, leave."""
    client = PresenceClient(url, client_id)
    await client.connect()
    online = await client.invoke_u_who_is_online(UWhoIsOnlineRequest())
    for entry in online.entries:
        print(f"{entry.client_id:>10}  node {entry.node_id}  {entry.status}")
    if send:
        to, _, text = send.partition(":")
        reply = await client.invoke_u_send_direct(USendDirectRequest(to_client_id=to, text=text))
        print(f"sent to {to}: delivered={reply.delivered} by node {reply.delivered_by_node}")
    await asyncio.sleep(linger)
    for note in client.notifications:
        sender = note.from_client_id or f"node {note.sent_from_node}"
        print(f"notification from {sender}: {note.text}")
    await client.disconnect()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="presence client")
    parser.add_argument("--url", default="ws://127.0.0.1:8001/srpc")
    parser.add_argument("--id", required=True, help="client id (the user)")
    parser.add_argument("--send", help="to:text, a direct message to send")
    parser.add_argument("--linger", type=float, default=5.0, help="seconds to stay connected")
    args = parser.parse_args()
    meshsrpc.loops.run(run(args.url, args.id, args.send, args.linger))


if __name__ == "__main__":
    main()
