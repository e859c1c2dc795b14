"""MeshClientService: call any client from any node (registry lookup + ``forward`` over the mesh).

Every node runs one. A node registers the clients whose streams it holds; ``invoke``
looks the client up (one HGET, its answer reused for a moment) and calls it directly
when it is local, or asks the owning node over the mesh (WIRE.md §3: ``forward``,
``kickClient``, ``updateMeta``).
The leader removes the clients of dead nodes and reports them once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic

from . import client_messages as messages
from .direct import DirectSettings
from .errors import (
    ClientConflictError,
    ClientDisconnectedError,
    ClientNotFoundError,
    MeshError,
    MeshNotRunningError,
)
from .keys import RegistryKeys, client_mesh_key
from .leader import LeaderOptions
from .mesh import BroadcastHandler, MeshService
from .observer import MeshObserver
from .probe import ClientHeldFn, OwnerProbe
from .registry.base import MeshClientRegistryBackend, RegisteredClient, TMeta
from .registry.memory import MeshClientMemoryRegistry
from .registry.metadata import encode_metadata, now_ms
from .registry.redis import MeshClientRedisRegistry
from .registry.registry import MeshClientRegistry
from .settings import RedisLike, RedisSettings, resolve_redis_settings

__all__ = [
    "ClientInvokeFn",
    "ClientKickFn",
    "ClientSupersededCallback",
    "ClientUpdateMetaFn",
    "MeshClientService",
    "NodeClientsOrphanedCallback",
]

logger = logging.getLogger("meshsrpc.client_service")

#: Delivers a call to a client whose stream this node holds:
#: fn(client_id, type, data, timeout seconds or None) -> result.
ClientInvokeFn = Callable[[str, str, Any, float | None], Awaitable[Any]]
#: Applies new metadata to a local client (e.g. its stream's meta and the registry):
#: fn(client_id, metadata) -> True if the client was found; sync or async.
ClientUpdateMetaFn = Callable[[str, Any], Awaitable[bool] | bool]
#: On the leader, once per dead node that still had clients: cb(node_id, clients).
NodeClientsOrphanedCallback = Callable[[int, list[RegisteredClient[Any]]], Any]
#: On the node that lost a client to another node: cb(client_id); return False if
#: there was nothing to kick. Sync or async.
ClientSupersededCallback = Callable[[str], Any]
#: Disconnects a client held here on an operator's request: fn(client_id) -> True if
#: it was here. Sync or async.
ClientKickFn = Callable[[str], Awaitable[bool] | bool]

# How long a client's owner, once looked up, is trusted without asking the registry
# again. Short: a client that moved meanwhile is found by the retry below, but one
# whose node died would send calls to the dead node until then.
_ROUTE_TTL = 0.25
# Routes remembered at most (oldest dropped first): callers of many clients must not
# grow it without bound.
_MAX_ROUTES = 10_000

#: The holding node's bound on a forwarded call (seconds): the caller times out on its
#: own; this only keeps a client that never answers from pinning the call forever.
DEFAULT_FORWARD_SAFETY_TIMEOUT = 300.0

#: How long a node waits for a client's owner to answer a probe (seconds): a few mesh
#: round trips, far below request_timeout, since the client waits for the answer.
DEFAULT_PROBE_TIMEOUT = 0.5
# A client id found held is refused without asking again for this long (seconds).
_PROBE_REFUSAL_TTL = 1.0

# Errors that must never be turned into a reply: they stop the task or the process.
_NOT_REPLIED = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


class _Routes:
    """Client id -> the node that owned it moments ago, so that most invokes of a busy
    client skip the registry lookup (one Redis round trip each).

    A route is only a hint: the owner re-checks that it holds the client and answers
    ClientDisconnectedError otherwise, and the caller then looks it up again.
    """

    def __init__(self) -> None:
        self._routes: dict[str, tuple[int, float]] = {}

    def get(self, client_id: str, now: float) -> int | None:
        """The node, if remembered less than ``_ROUTE_TTL`` ago."""
        route = self._routes.get(client_id)
        if route is None:
            return None
        if route[1] <= now:
            del self._routes[client_id]
            return None
        return route[0]

    def remember(self, client_id: str, node_id: int, now: float) -> None:
        """Trust ``node_id`` as the owner for the next ``_ROUTE_TTL`` seconds."""
        routes = self._routes
        routes.pop(client_id, None)
        if len(routes) >= _MAX_ROUTES:
            del routes[next(iter(routes))]
        routes[client_id] = (node_id, now + _ROUTE_TTL)

    def forget(self, client_id: str) -> None:
        """Look the client up again next time."""
        self._routes.pop(client_id, None)

    def forget_node(self, node_id: int) -> None:
        """Drop every route to ``node_id`` (it left the mesh)."""
        for client_id in [c for c, (n, _) in self._routes.items() if n == node_id]:
            del self._routes[client_id]

    def clear(self) -> None:
        """Forget everything."""
        self._routes.clear()


class MeshClientService(Generic[TMeta]):
    """Tracks clients across the mesh ``_mc:<key>`` and delivers calls to them.

    ``registry_backend`` defaults to ``MeshClientRedisRegistry("_mc:<key>")`` on the
    same Redis (or, for a ``memory://`` URL, the registry shared by that in-process
    mesh); a backend created here is closed by :meth:`stop`.
    """

    def __init__(
        self,
        key: str,
        client_invoke_fn: ClientInvokeFn,
        *,
        client_update_meta_fn: ClientUpdateMetaFn | None = None,
        registry_backend: MeshClientRegistryBackend[TMeta] | None = None,
        heartbeat_interval: float = 5.0,
        node_ttl: float = 15.0,
        request_timeout: float = 10.0,
        leader: LeaderOptions | None = None,
        redis: RedisLike = None,
        direct: DirectSettings | bool | None = None,
        forward_safety_timeout: float = DEFAULT_FORWARD_SAFETY_TIMEOUT,
        client_held_fn: ClientHeldFn | None = None,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        if not forward_safety_timeout > 0:
            raise ValueError("forward_safety_timeout must be positive")
        self.key = key
        #: Longest a call forwarded here may wait for the client (seconds), unless the
        #: caller's own timeout is longer.
        self.forward_safety_timeout = forward_safety_timeout
        self.mesh_key = client_mesh_key(key)
        # Resolved (environment included) in start(), as MeshService does.
        self._redis = redis
        self._mesh = MeshService(
            self.mesh_key,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            request_timeout=request_timeout,
            leader=leader,
            redis=redis,
            direct=direct,
        )
        self._owned_backend: Any = None
        self._backend: MeshClientRegistryBackend[TMeta] | None = registry_backend
        # Node 0 until started: the instance id is only known once the mesh is joined.
        self._registry: MeshClientRegistry[TMeta] | None = (
            None if registry_backend is None else MeshClientRegistry(0, registry_backend)
        )
        self._client_invoke_fn = client_invoke_fn
        self._client_update_meta_fn = client_update_meta_fn
        self._orphaned_callbacks: list[NodeClientsOrphanedCallback] = []
        self._superseded_callbacks: list[ClientSupersededCallback] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._routes = _Routes()
        self._running = False
        self._lifecycle = asyncio.Lock()
        self._mesh.register_handler(messages.FORWARD, self._serve_forward)
        self._mesh.register_handler(messages.KICK_CLIENT, self._serve_kick_client)
        self._mesh.register_handler(messages.UPDATE_META, self._serve_update_meta)
        self._kick_fn: ClientKickFn | None = None
        self._mesh.register_handler(messages.OPS_KICK, self._serve_ops_kick)
        self._mesh.set_node_cleaned_up_callback(self._on_node_cleaned_up)
        self._probe = OwnerProbe(
            self._mesh, client_held_fn, timeout=probe_timeout, refusal_ttl=_PROBE_REFUSAL_TTL
        )

    # --- state ------------------------------------------------------------------------

    @property
    def instance_id(self) -> int:
        """This node's mesh instance id; 0 when not running."""
        return self._mesh.instance_id

    @property
    def is_running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def client_registry(self) -> MeshClientRegistry[TMeta]:
        """The registry as seen from this node (node 0 before the first start).

        Without a ``registry_backend``, the default one is created by the first
        :meth:`start` (where Redis is comes from the environment then); before that
        this raises :class:`MeshNotRunningError`.
        """
        if self._registry is None:
            raise MeshNotRunningError(
                f"MeshClientService {self.key!r} has no registry before its first start()"
            )
        return self._registry

    @property
    def mesh(self) -> MeshService:
        """The underlying mesh node (``_mc:<key>``)."""
        return self._mesh

    @property
    def observer(self) -> MeshObserver | None:
        """Receives this node's client and mesh events (metrics); None = nobody."""
        return self._mesh.observer

    @observer.setter
    def observer(self, observer: MeshObserver | None) -> None:
        self._mesh.observer = observer

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Join the mesh; raises MeshError if already running."""
        async with self._lifecycle:
            if self._running:
                raise MeshError(f"MeshClientService {self.key!r} is already running")
            settings = resolve_redis_settings(self._redis)
            await self._mesh.start()
            if self._backend is None or self._owned_backend is not None:
                # Created anew on every start: stop() closed the previous one.
                self._owned_backend = self._backend = self._default_backend(settings)
            self._registry = MeshClientRegistry(self._mesh.instance_id, self._backend)
            self._running = True

    def _default_backend(self, settings: RedisSettings) -> MeshClientRegistryBackend[TMeta]:
        if settings.is_memory:
            # Nodes of one memory:// mesh share one registry, like one Redis.
            keys = RegistryKeys(settings.key_prefix, self.mesh_key)
            shared = f"{settings.memory_name}/{keys.base}"
            return MeshClientMemoryRegistry.shared(shared)
        if settings.is_cluster:
            from .registry.redis_cluster import MeshClientRedisClusterRegistry

            return MeshClientRedisClusterRegistry(self.mesh_key, redis=settings)
        return MeshClientRedisRegistry(self.mesh_key, redis=settings)

    async def stop(self) -> None:
        """Remove this node's clients from the registry, leave the mesh, close what we opened.

        Idempotent and safe if never started.
        """
        async with self._lifecycle:
            if self._running:
                self._running = False
                self._routes.clear()
                try:
                    left = await self.client_registry.cleanup_node()
                except Exception:
                    logger.exception("client service %s: removing own clients failed", self.key)
                else:
                    self._event("nodeLeft", clientIds=[c.client_id for c in left])
                await _cancel_and_wait(self._tasks)
                await self._mesh.stop()
            owned = self._owned_backend
            if owned is not None and hasattr(owned, "aclose"):
                try:
                    await owned.aclose()
                except Exception:
                    logger.exception("client service %s: closing the registry failed", self.key)

    # --- callbacks --------------------------------------------------------------------

    def on_node_clients_orphaned(self, callback: NodeClientsOrphanedCallback) -> None:
        """Call ``callback(node_id, clients)`` on the leader, once per dead node with clients.

        ``clients`` are those that had not reconnected elsewhere. Errors are logged.
        """
        self._orphaned_callbacks.append(callback)

    async def owner_holds(self, client_id: str, node_id: int) -> bool:
        """Ask ``node_id`` (the client's registered owner) whether it still holds a live
        connection for the client: False when it says not, or does not answer within
        ``probe_timeout`` (dead or cut off); True otherwise, also for a node that cannot
        tell (a TypeScript node). See :mod:`meshsrpc.probe`."""
        return await self._probe.is_held(client_id, node_id)

    def on_client_superseded(self, callback: ClientSupersededCallback) -> None:
        """Call ``callback(client_id)`` here when the client registered on another node.

        The callback should close the stale stream. Errors are logged.
        """
        self._superseded_callbacks.append(callback)

    def set_kick_handler(self, kick: ClientKickFn | None) -> None:
        """Let operators disconnect a client held here (``meshsrpc kick``) with ``kick``."""
        self._kick_fn = kick

    # --- clients ----------------------------------------------------------------------

    async def register_client(
        self, client_id: str, metadata: TMeta, *, allow_supersede: bool = True
    ) -> bool:
        """Register a client whose stream this node holds; False on conflict.

        When it superseded another node, that node is told to kick its stream. Not
        running: a no-op returning True.
        """
        if not self._running:
            return True
        self._routes.forget(client_id)
        try:
            old = await self.client_registry.register(
                client_id, metadata, allow_supersede=allow_supersede
            )
        except ClientConflictError:
            if self._mesh.observer is not None:
                self._mesh.observer.client_conflict()
            return False
        except Exception:
            self._registry_failed("register")
            raise
        self._kick_old_owner(client_id, old)
        self._connected(client_id, old)
        return True

    async def reserve_client(
        self, client_id: str, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Reserve the client for this node at connect time, hidden until activated.

        Returns the node superseded (told to kick its stream) or None; raises
        ClientConflictError when refused. Not running: a no-op returning None.
        """
        if not self._running:
            return None
        self._routes.forget(client_id)
        try:
            old = await self.client_registry.reserve(
                client_id, metadata, allow_supersede=allow_supersede
            )
        except ClientConflictError:
            raise
        except Exception:
            self._registry_failed("reserve")
            raise
        self._kick_old_owner(client_id, old)
        return old

    async def activate_client(self, client_id: str, metadata: TMeta) -> bool:
        """Make the reservation visible; False if another node took the client meanwhile.

        With a backend without reservations this is the registration itself and may
        raise ClientConflictError. Not running: a no-op returning True.
        """
        if not self._running:
            return True
        self._routes.forget(client_id)
        try:
            if self.client_registry.supports_reservation:
                old = None
                if not await self.client_registry.activate(client_id, metadata):
                    return False
            else:
                old = await self.client_registry.register_reserved(client_id, metadata)
        except ClientConflictError:
            raise
        except Exception:
            self._registry_failed("activate")
            raise
        self._kick_old_owner(client_id, old)
        self._connected(client_id, old)
        return True

    async def unregister_client(self, client_id: str) -> bool:
        """Remove the client if this node owns it. Not running: False."""
        if not self._running:
            return False
        try:
            removed = await self.client_registry.unregister(client_id)
        except Exception:
            self._registry_failed("unregister")
            raise
        if removed:
            if self._mesh.observer is not None:
                self._mesh.observer.client_disconnected()
            self._event("disconnect", clientId=client_id)
        return removed

    async def update_client_metadata(self, client_id: str, metadata: TMeta) -> bool:
        """Give a client new metadata, on whichever node owns it; False if unknown.

        The owner's ``client_update_meta_fn`` applies it (MeshSrpcServer merges it into
        ``stream.meta``); without one, the registry entry's metadata is replaced.

        Raises TypeError for metadata that is not JSON-serialisable. Not running: False.
        """
        encode_metadata(metadata)  # fail here, not on the owner
        if not self._running:
            return False
        client = await self.client_registry.get_client(client_id)
        if client is None:
            return False
        if client.node_id == self.instance_id:
            return await self._apply_metadata(client_id, metadata)
        reply = await self._mesh.invoke(
            client.node_id, messages.UPDATE_META, messages.update_meta(client_id, metadata)
        )
        return messages.parse_update_meta_reply(reply)

    async def invoke(
        self,
        client_id: str,
        type: str,
        data: Any,
        timeout: float | None = None,
    ) -> Any:
        """Call ``type`` on the client, wherever it is connected, and return its answer.

        ``timeout`` None means the service's ``request_timeout``, whether the client is
        here or on another node. Raises ClientNotFoundError (unknown, or not running),
        ClientDisconnectedError (its node has no live stream for it),
        ClientInvocationError (the remote call failed), or the mesh's errors (e.g.
        MeshRequestTimeoutError).
        """
        if not self._running:
            raise ClientNotFoundError(
                client_id,
                f"cannot look up client {client_id!r}: MeshClientService {self.key!r} is not"
                " running (call start() first)",
            )
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
                client = await self.client_registry.get_client(client_id)
                if client is None:
                    raise ClientNotFoundError(client_id) from exc
                if client.node_id == node_id:
                    raise
                return await self._deliver(client.node_id, client_id, type, data, timeout)
            except BaseException:
                self._routes.forget(client_id)
                raise
        client = await self.client_registry.get_client(client_id)
        if client is None:
            raise ClientNotFoundError(client_id)
        return await self._deliver(client.node_id, client_id, type, data, timeout)

    async def _deliver(
        self, node_id: int, client_id: str, type: str, data: Any, timeout: float | None
    ) -> Any:
        """Call the client on ``node_id`` (just read from the registry), here or remotely."""
        if node_id == self.instance_id:
            return await self._client_invoke_fn(client_id, type, data, timeout)
        self._routes.remember(client_id, node_id, asyncio.get_running_loop().time())
        try:
            return await self._forward(node_id, client_id, type, data, timeout)
        except BaseException:
            self._routes.forget(client_id)
            raise

    # --- broadcasts -------------------------------------------------------------------

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``."""
        self._mesh.register_broadcast_handler(type, handler)

    async def broadcast(self, type: str, data: Any, *, skip_self: bool = False) -> None:
        """Send ``data`` to the ``type`` broadcast handler of every node."""
        await self._mesh.broadcast(type, data, skip_self=skip_self)

    # --- the caller's side of forwarding ----------------------------------------------

    async def _forward(
        self, node_id: int, client_id: str, type: str, data: Any, seconds: float | None
    ) -> Any:
        request = messages.forward(client_id, type, data, seconds)
        reply = await self._mesh.invoke(node_id, messages.FORWARD, request, timeout=seconds)
        return messages.parse_forward_reply(reply, node_id, client_id)

    def _kick_old_owner(self, client_id: str, old_node: int | None) -> None:
        if old_node is None or old_node == self.instance_id:
            return
        # In the background: a dead old owner must not hold up the new connection.
        self._spawn(self._send_kick(client_id, old_node))

    async def _send_kick(self, client_id: str, node_id: int) -> None:
        try:
            reply = await self._mesh.invoke(
                node_id, messages.KICK_CLIENT, messages.kick_client(client_id)
            )
        except Exception as exc:
            logger.warning("could not tell node %d to kick client %r: %s", node_id, client_id, exc)
            return
        logger.debug("node %d kicked client %r: %r", node_id, client_id, reply)

    # --- the owner's side: mesh handlers ----------------------------------------------

    async def _serve_forward(self, data: Any) -> dict[str, Any]:
        request = messages.parse_forward(data)
        if request is None:
            return dict(messages.MALFORMED_FORWARD)
        # The caller alone applies its timeout (as TypeScript nodes do): our request
        # heartbeats keep it waiting while the client works. The holder's own bound
        # only stops a silent client from pinning the call forever.
        limit = self.forward_safety_timeout
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

    async def _serve_kick_client(self, data: Any) -> dict[str, Any]:
        client_id = messages.parse_kick_client(data)
        if client_id is None:
            return messages.kick_reply(False)
        kicked = False
        for callback in list(self._superseded_callbacks):
            try:
                result = await _call(callback, client_id)
            except Exception:
                logger.exception("on_client_superseded callback failed for %r", client_id)
                continue
            kicked = kicked or result is not False
        return messages.kick_reply(kicked)

    async def _serve_ops_kick(self, data: Any) -> dict[str, Any]:
        client_id = messages.parse_kick_client(data)
        if client_id is None or self._kick_fn is None:
            return messages.kick_reply(False)
        kicked = bool(await _call(self._kick_fn, client_id))
        logger.info(
            "operator kick of client %s: %s",
            client_id,
            "disconnected" if kicked else "not here",
            extra={"mesh_key": self.key, "node_id": self.instance_id, "client_id": client_id},
        )
        return messages.kick_reply(kicked)

    async def _serve_update_meta(self, data: Any) -> dict[str, Any]:
        request = messages.parse_update_meta(data)
        if not self._running or request is None:
            return messages.update_meta_reply(False)
        updated = await self._apply_metadata(request.client_id, request.metadata)
        return messages.update_meta_reply(updated)

    async def _apply_metadata(self, client_id: str, metadata: Any) -> bool:
        if self._client_update_meta_fn is not None:
            return bool(await _call(self._client_update_meta_fn, client_id, metadata))
        return await self.client_registry.update_metadata(client_id, metadata)

    # --- the leader's side: orphans ---------------------------------------------------

    async def _on_node_cleaned_up(self, node_id: int) -> None:
        self._routes.forget_node(node_id)
        try:
            # Atomic: of concurrent cleanups of one node, only one gets its clients.
            clients = await self.client_registry.cleanup_node(node_id)
        except Exception:
            logger.exception("could not remove the clients of dead node %d", node_id)
            return
        self._event("nodeDown", deadNodeId=node_id, orphans=[c.client_id for c in clients])
        if not clients:
            return
        if self._mesh.observer is not None:
            self._mesh.observer.orphans_reported(node_id, len(clients))
        logger.info(
            "node %d died with %d client(s)",
            node_id,
            len(clients),
            extra={
                "mesh_key": self.key,
                "node_id": self.instance_id,
                "dead_node_id": node_id,
                "orphans": len(clients),
            },
        )
        for callback in list(self._orphaned_callbacks):
            try:
                await _call(callback, node_id, clients)
            except Exception:
                logger.exception("on_node_clients_orphaned callback failed for node %d", node_id)

    # --- presence events and metrics -------------------------------------------------

    def _connected(self, client_id: str, old_node: int | None) -> None:
        observer = self._mesh.observer
        if old_node is not None and old_node != self.instance_id:
            if observer is not None:
                observer.client_connected()
                observer.client_moved()
            self._event("move", clientId=client_id, fromNodeId=old_node)
        else:
            if observer is not None:
                observer.client_connected()
            self._event("connect", clientId=client_id)

    def _event(self, event: str, **fields: Any) -> None:
        """Publish a presence event (WIRE.md §6) as this node."""
        self._mesh.publish_event(
            {"event": event, "nodeId": self.instance_id, **fields, "at": now_ms()}
        )

    def _registry_failed(self, operation: str) -> None:
        if self._mesh.observer is not None:
            self._mesh.observer.registry_error(operation)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _cancel_and_wait(tasks: set[asyncio.Task[Any]]) -> None:
    pending = set(tasks)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
