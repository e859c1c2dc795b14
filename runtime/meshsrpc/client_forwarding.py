"""Calls to a client by id, wherever it is connected (WIRE.md §3, ``forward``).

The caller looks the client's node up (a remembered route, else the registry) and
calls it here or asks that node over the mesh; the owner delivers the forwarded call
to its client and answers with the result or the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import client_messages as messages
from .client_routes import ClientRoutes
from .errors import ClientDisconnectedError, ClientNotFoundError
from .mesh import MeshService
from .registry.registry import MeshClientRegistry

__all__ = ["DEFAULT_FORWARD_SAFETY_TIMEOUT", "ClientForwarding", "ClientInvokeFn"]

#: Delivers a call to a client whose stream this node holds:
#: fn(client_id, type, data, timeout seconds or None) -> result.
ClientInvokeFn = Callable[[str, str, Any, float | None], Awaitable[Any]]

#: The holding node's bound on a forwarded call (seconds): the caller times out on its
#: own; this only keeps a client that never answers from pinning the call forever.
DEFAULT_FORWARD_SAFETY_TIMEOUT = 300.0

# Errors that must never be turned into a reply: they stop the task or the process.
_NOT_REPLIED = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


class ClientForwarding:
    """Both sides of ``forward``: the caller's lookup and retry, the owner's delivery."""

    def __init__(
        self,
        mesh: MeshService,
        routes: ClientRoutes,
        registry: Callable[[], MeshClientRegistry[Any]],
        client_invoke_fn: ClientInvokeFn,
        *,
        safety_timeout: float,
    ) -> None:
        self._mesh = mesh
        self._routes = routes
        self._registry = registry
        self._client_invoke_fn = client_invoke_fn
        #: Longest a call forwarded here may wait for the client (seconds), unless the
        #: caller's own timeout is longer.
        self.safety_timeout = safety_timeout

    async def invoke(self, client_id: str, type: str, data: Any, timeout: float | None) -> Any:
        """Call ``type`` on the client (see :meth:`MeshClientService.invoke`)."""
        if timeout is None:
            # One default for every path: a local client's delivery, and the caller's
            # silence bound (and timeoutMs) of a forward.
            timeout = self._mesh.request_timeout
        now = asyncio.get_running_loop().time()
        node_id = self._routes.get(client_id, now)
        if node_id is not None:
            try:
                return await self._forward(node_id, client_id, type, data, timeout)
            except ClientDisconnectedError as exc:
                # The route may be stale (the client moved or left): answer as a fresh
                # lookup would have, trying once more if the client is elsewhere now.
                self._routes.forget(client_id)
                client = await self._registry().get_client(client_id)
                if client is None:
                    raise ClientNotFoundError(client_id) from exc
                if client.node_id == node_id:
                    raise
                return await self._deliver(client.node_id, client_id, type, data, timeout)
            except BaseException:
                self._routes.forget(client_id)
                raise
        client = await self._registry().get_client(client_id)
        if client is None:
            raise ClientNotFoundError(client_id)
        return await self._deliver(client.node_id, client_id, type, data, timeout)

    async def _deliver(
        self, node_id: int, client_id: str, type: str, data: Any, timeout: float | None
    ) -> Any:
        """Call the client on ``node_id`` (just read from the registry), here or remotely."""
        if node_id == self._mesh.instance_id:
            return await self._client_invoke_fn(client_id, type, data, timeout)
        self._routes.remember(client_id, node_id, asyncio.get_running_loop().time())
        try:
            return await self._forward(node_id, client_id, type, data, timeout)
        except BaseException:
            self._routes.forget(client_id)
            raise

    async def _forward(
        self, node_id: int, client_id: str, type: str, data: Any, seconds: float | None
    ) -> Any:
        request = messages.forward(client_id, type, data, seconds)
        reply = await self._mesh.invoke(node_id, messages.FORWARD, request, timeout=seconds)
        return messages.parse_forward_reply(reply, node_id, client_id)

    async def serve_forward(self, data: Any) -> dict[str, Any]:
        """The owner's side: deliver a forwarded call to the client held here."""
        request = messages.parse_forward(data)
        if request is None:
            return dict(messages.MALFORMED_FORWARD)
        # The caller alone applies its timeout (as TypeScript nodes do): our request
        # heartbeats keep it waiting while the client works. The holder's own bound
        # only stops a silent client from pinning the call forever.
        limit = self.safety_timeout
        if request.timeout_ms is not None:
            limit = max(limit, request.timeout_ms / 1000)
        try:
            result = await self._client_invoke_fn(
                request.client_id, request.type, request.data, limit
            )
        except _NOT_REPLIED:
            raise
        except BaseException as exc:
            return messages.forward_error(exc)
        return messages.forward_reply(result)
