"""MeshClientService: call any client from any node (registry lookup + ``forward`` over the mesh).

Every node runs one. A node registers the clients whose streams it holds; ``invoke``
looks the client up (one HGET, its answer reused for a moment) and calls it directly
when it is local, or asks the owning node over the mesh (WIRE.md §3: ``forward``,
``kickClient``, ``updateMeta``).
The leader removes the clients of dead nodes and reports them once.

The service owns the registry and the lifecycle; its parts do the rest:
:mod:`meshsrpc.client_forwarding` (invoke), :mod:`meshsrpc.client_control` (kick and
updateMeta), :mod:`meshsrpc.client_orphans` (the leader's report) and
:mod:`meshsrpc.client_presence` (events and metrics).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic

from . import client_messages as messages
from .client_control import (
    ClientControl,
    ClientKickFn,
    ClientSupersededCallback,
    ClientUpdateMetaFn,
)
from .client_forwarding import DEFAULT_FORWARD_SAFETY_TIMEOUT, ClientForwarding, ClientInvokeFn
from .client_orphans import NodeClientsOrphanedCallback, OrphanReports
from .client_presence import ClientPresence
from .client_routes import ClientRoutes
from .direct import DirectSettings
from .errors import ClientConflictError, ClientNotFoundError, MeshError, MeshNotRunningError
from .keys import RegistryKeys, client_mesh_key
from .leader import LeaderOptions
from .mesh import BroadcastHandler, MeshService
from .observer import MeshObserver
from .probe import ClientHeldFn, OwnerProbe
from .registry.base import MeshClientRegistryBackend, TMeta
from .registry.memory import MeshClientMemoryRegistry
from .registry.redis import MeshClientRedisRegistry
from .registry.registry import MeshClientRegistry
from .settings import RedisLike, RedisSettings, resolve_redis_settings

__all__ = [
    "DEFAULT_FORWARD_SAFETY_TIMEOUT",
    "DEFAULT_PROBE_TIMEOUT",
    "ClientInvokeFn",
    "ClientKickFn",
    "ClientSupersededCallback",
    "ClientUpdateMetaFn",
    "MeshClientService",
    "NodeClientsOrphanedCallback",
]

logger = logging.getLogger("meshsrpc.client_service")

#: How long a node waits for a client's owner to answer a probe (seconds): a few mesh
#: round trips, far below request_timeout, since the client waits for the answer.
DEFAULT_PROBE_TIMEOUT = 0.5
# A client id found held is refused without asking again for this long (seconds).
_PROBE_REFUSAL_TTL = 1.0


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
        self._running = False
        self._lifecycle = asyncio.Lock()
        self._routes = ClientRoutes()
        self._presence = ClientPresence(self._mesh)

        def registry() -> MeshClientRegistry[Any]:
            return self.client_registry

        self._forwarding = ClientForwarding(
            self._mesh,
            self._routes,
            registry,
            client_invoke_fn,
            safety_timeout=forward_safety_timeout,
        )
        self._mesh.register_handler(messages.FORWARD, self._forwarding.serve_forward)
        self._control = ClientControl(
            self._mesh, registry, lambda: self._running, client_update_meta_fn, key=key
        )
        self._orphans = OrphanReports(self._mesh, self._routes, registry, self._presence, key=key)
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

    @property
    def forward_safety_timeout(self) -> float:
        """Longest a call forwarded here may wait for the client (seconds), unless the
        caller's own timeout is longer."""
        return self._forwarding.safety_timeout

    @forward_safety_timeout.setter
    def forward_safety_timeout(self, seconds: float) -> None:
        self._forwarding.safety_timeout = seconds

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
                    self._presence.event("nodeLeft", clientIds=[c.client_id for c in left])
                await self._control.stop()
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
        self._orphans.callbacks.append(callback)

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
        self._control.superseded_callbacks.append(callback)

    def set_kick_handler(self, kick: ClientKickFn | None) -> None:
        """Let operators disconnect a client held here (``meshsrpc kick``) with ``kick``."""
        self._control.kick_fn = kick

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
            self._presence.registry_failed("register")
            raise
        self._control.kick_old_owner(client_id, old)
        self._presence.connected(client_id, old)
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
            self._presence.registry_failed("reserve")
            raise
        self._control.kick_old_owner(client_id, old)
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
            self._presence.registry_failed("activate")
            raise
        self._control.kick_old_owner(client_id, old)
        self._presence.connected(client_id, old)
        return True

    async def unregister_client(self, client_id: str) -> bool:
        """Remove the client if this node owns it. Not running: False."""
        if not self._running:
            return False
        try:
            removed = await self.client_registry.unregister(client_id)
        except Exception:
            self._presence.registry_failed("unregister")
            raise
        if removed:
            self._presence.disconnected(client_id)
        return removed

    async def update_client_metadata(self, client_id: str, metadata: TMeta) -> bool:
        """Give a client new metadata, on whichever node owns it; False if unknown.

        The owner's ``client_update_meta_fn`` applies it (MeshSrpcServer merges it into
        ``stream.meta``); without one, the registry entry's metadata is replaced.

        Raises TypeError for metadata that is not JSON-serialisable. Not running: False.
        """
        return await self._control.update_metadata(client_id, metadata)

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
        return await self._forwarding.invoke(client_id, type, data, timeout)

    # --- broadcasts -------------------------------------------------------------------

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``."""
        self._mesh.register_broadcast_handler(type, handler)

    async def broadcast(self, type: str, data: Any, *, skip_self: bool = False) -> None:
        """Send ``data`` to the ``type`` broadcast handler of every node."""
        await self._mesh.broadcast(type, data, skip_self=skip_self)
