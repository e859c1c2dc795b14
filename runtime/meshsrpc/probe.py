"""Ask a client's owner node whether it still holds a live connection for it.

A client whose node crashed reconnects elsewhere at once, but the registry still names
the dead node until the leader cleans it up (up to ``node_ttl`` and more). Refusing
it with 4001 until then (as the TypeScript design does) is 15 to 45 s of downtime. So a
node that meets such a conflict asks the owner, over the mesh, with a short timeout:

- ``{"held": true}`` → the client really is connected there: refuse (4001);
- ``{"held": false}`` (the node is alive, its connection is gone) or no answer in
  time (the node is dead or cut off) → take the client over;
- ``MESH_NO_HANDLER:probeClient`` (a TypeScript node, an older Python node) or any
  other error → treated as held, so mixed meshes keep today's behaviour.

The request is the extension message ``probeClient {"clientId"}`` (docs/wire.md §3).
One probe runs per client id at a time (concurrent asks share it), and a client id
found held is not probed again for ``refusal_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import MeshNoHandlerError, MeshRequestTimeoutError
from .mesh import MeshService

__all__ = ["PROBE_CLIENT", "ClientHeldFn", "OwnerProbe"]

logger = logging.getLogger("meshsrpc.probe")

PROBE_CLIENT = "probeClient"

#: fn(client_id) -> True while this node holds a live connection for the client.
ClientHeldFn = Callable[[str], "bool | Awaitable[bool]"]

# Refusals remembered at most: a flood of conflicting ids must not grow this forever.
_MAX_REFUSALS = 10_000


class OwnerProbe:
    """The ``probeClient`` mesh request: its handler here, and asking another node."""

    def __init__(
        self,
        mesh: MeshService,
        client_held_fn: ClientHeldFn | None,
        *,
        timeout: float,
        refusal_ttl: float,
    ) -> None:
        if not timeout > 0 or not refusal_ttl >= 0:
            raise ValueError("probe timeout must be positive and refusal_ttl not negative")
        self.timeout = timeout
        self.refusal_ttl = refusal_ttl
        self._mesh = mesh
        self._client_held_fn = client_held_fn
        self._in_flight: dict[str, asyncio.Future[bool]] = {}
        self._refused: dict[str, float] = {}  # client id -> loop time until which "held"
        if client_held_fn is not None:
            mesh.register_handler(PROBE_CLIENT, self._serve)

    async def is_held(self, client_id: str, node_id: int) -> bool:
        """True unless ``node_id`` answers "not held" or does not answer within ``timeout``."""
        loop = asyncio.get_running_loop()
        until = self._refused.get(client_id)
        if until is not None:
            if loop.time() < until:
                return True
            del self._refused[client_id]
        running = self._in_flight.get(client_id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bool] = loop.create_future()
        self._in_flight[client_id] = future
        try:
            held = await self._ask(client_id, node_id)
            future.set_result(held)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: sharers get it through their await
            raise
        finally:
            del self._in_flight[client_id]
        if held:
            if len(self._refused) >= _MAX_REFUSALS:
                del self._refused[next(iter(self._refused))]
            self._refused[client_id] = loop.time() + self.refusal_ttl
        return held

    async def _ask(self, client_id: str, node_id: int) -> bool:
        try:
            reply = await self._mesh.invoke(
                node_id, PROBE_CLIENT, {"clientId": client_id}, timeout=self.timeout
            )
        except MeshRequestTimeoutError:
            logger.info(
                "node %d did not answer a probe for client %r within %.2f s: taking it over",
                node_id,
                client_id,
                self.timeout,
            )
            return False
        except MeshNoHandlerError:
            return True  # a node that cannot tell (TypeScript): as before, refuse
        except Exception as exc:
            logger.warning("probe of client %r on node %d failed: %s", client_id, node_id, exc)
            return True
        held = not (isinstance(reply, dict) and reply.get("held") is False)
        if not held:
            logger.info("node %d no longer holds client %r: taking it over", node_id, client_id)
        return held

    async def _serve(self, data: Any) -> dict[str, bool]:
        client_id = data.get("clientId") if isinstance(data, dict) else None
        if not isinstance(client_id, str) or self._client_held_fn is None:
            return {"held": True}  # cannot tell: the asker refuses, as before
        held = self._client_held_fn(client_id)
        if inspect.isawaitable(held):
            held = await held
        return {"held": bool(held)}
