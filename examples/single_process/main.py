"""Two presence nodes and three clients in one process, on ``memory://``: no Redis at all.

The in-process engine gives the nodes the same mesh as Redis would — ids, heartbeats,
a leader, the client registry — so bob on node B gets alice's message sent on node A.
This is also how to unit-test an app: ``memory://<unique name>`` per test.

::

    python -m examples.single_process.main
"""

from __future__ import annotations

import contextlib
import sys

import meshsrpc.loops
from meshsrpc.redis_server import free_port

from ..presence.client import PresenceClient
from ..presence.generated.presence import Status, USendDirectRequest, UWhoIsOnlineRequest
from ..presence.server import PresenceServer

__all__ = ["main", "run"]


async def run(url: str = "memory://single_process") -> list[str]:
    """Run the scenario on the in-process mesh ``url``; return what it printed."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text)

    # Development only: the nodes accept unsigned clients (no SRPC_AUTH_SECRET needed).
    nodes = [
        PresenceServer(redis=url, heartbeat_interval=0.5, node_ttl=3.0, allow_unsigned=True)
        for _ in range(2)
    ]
    ports = [free_port() for _ in nodes]
    clients: list[PresenceClient] = []
    async with contextlib.AsyncExitStack() as stack:
        for node, port in zip(nodes, ports, strict=True):
            await node.listen("127.0.0.1", port)
            await stack.enter_async_context(node)  # mesh_stop() and close() on exit
        # Clients leave before their nodes close (callbacks run first, last out).
        stack.push_async_callback(disconnect_all, clients)
        say(f"nodes {[n.mesh_instance_id for n in nodes]} share {url}")

        alice = PresenceClient(f"ws://127.0.0.1:{ports[0]}/srpc", "alice")
        bob = PresenceClient(f"ws://127.0.0.1:{ports[1]}/srpc", "bob", status=Status.BUSY)
        carol = PresenceClient(f"ws://127.0.0.1:{ports[1]}/srpc", "carol")
        for client in (alice, bob, carol):
            await client.connect()
            clients.append(client)

        online = await alice.invoke_u_who_is_online(UWhoIsOnlineRequest())
        for entry in sorted(online.entries, key=lambda e: e.client_id):
            say(f"online: {entry.client_id} on node {entry.node_id} ({entry.status})")

        sent = await alice.invoke_u_send_direct(USendDirectRequest(to_client_id="bob", text="hi!"))
        note = bob.notifications[-1]
        say(f"alice → bob: delivered={sent.delivered} by node {sent.delivered_by_node}")
        say(f"bob got {note.text!r} from {note.from_client_id} via node {note.sent_from_node}")

        status = await carol.set_status(Status.AWAY)
        registered = await nodes[0].client_registry.get_client("carol")
        meta = registered.metadata if registered else None
        say(f"carol is now {status}; node {nodes[0].mesh_instance_id} sees {meta}")
    return lines


async def disconnect_all(clients: list[PresenceClient]) -> None:
    """Disconnect every client."""
    for client in clients:
        await client.disconnect()


def main() -> None:
    """``python -m examples.single_process.main``."""
    meshsrpc.loops.run(run(sys.argv[1] if len(sys.argv) > 1 else "memory://single_process"))


if __name__ == "__main__":
    main()
