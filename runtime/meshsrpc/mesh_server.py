"""MeshSrpcServer: an SrpcServer whose clients are in the mesh registry, callable from any node.

This is the only place where SRPC and the mesh meet, by composition: the server's
stream hooks drive a :class:`MeshRegistrar` (the client table, the registry writes and
the connected/disconnected callbacks, see :mod:`meshsrpc.mesh_registrar` for the
lifecycle of one stream), and :class:`MeshCalls` routes calls by client id.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, Unpack

import betterproto2

from ._tasks import raise_if_cancelling
from .client_callbacks import ClientLifecycleHandler
from .client_service import (
    DEFAULT_FORWARD_SAFETY_TIMEOUT,
    DEFAULT_PROBE_TIMEOUT,
    MeshClientService,
    NodeClientsOrphanedCallback,
)
from .direct import DirectSettings
from .health import MeshHealth
from .leader import LeaderOptions
from .mesh import BroadcastHandler, MeshNode
from .mesh_calls import MeshCalls
from .mesh_registrar import MeshRegistrar
from .moves import DrainMoves
from .observer import MeshObserver, outcome_of
from .registry.base import MeshClientRegistryBackend
from .registry.registry import MeshClientRegistry
from .replay import RedisReplayGuard
from .settings import RedisLike, resolve_redis_settings
from .srpc.options import SrpcServerOptions
from .srpc.protocol import CLOSE_CODES, CloseCause
from .srpc.server import ServerMessageHandler, SrpcServer
from .srpc.serving import invoke_stream
from .srpc.stream import SrpcStream

__all__ = ["ClientLifecycleHandler", "MeshSrpcServer", "MeshSrpcServerOptions"]

logger = logging.getLogger("meshsrpc.mesh_server")

C = TypeVar("C", bound=betterproto2.Message)
S = TypeVar("S", bound=betterproto2.Message)
MetaT = TypeVar("MetaT")


class MeshSrpcServerOptions(SrpcServerOptions, Generic[MetaT], total=False):
    """MeshSrpcServer's keyword arguments but ``mesh_key`` (and SrpcServer's)."""

    registry_backend: MeshClientRegistryBackend[MetaT] | None
    extract_metadata: Callable[[SrpcStream], MetaT] | None
    heartbeat_interval: float
    node_ttl: float
    request_timeout: float
    leader: LeaderOptions | None
    redis: RedisLike
    forward_safety_timeout: float
    probe_timeout: float
    metrics: MeshObserver | None
    direct: DirectSettings | bool | None


class _RunningRequests:
    """Counts the client requests whose handlers are running, so close() lets them answer;
    times them for the metrics, when they are on."""

    def __init__(self, metrics: MeshObserver | None) -> None:
        self.count = 0
        self._done = asyncio.Event()
        self._done.set()
        self._metrics = metrics

    async def track(
        self, prefix: str, handler: ServerMessageHandler, stream: SrpcStream, request: Any
    ) -> Any:
        """Run ``handler(stream, request)``, counted."""
        # SRPC queues the reply in the same step the handler returns in, so once the
        # count drops to zero every reply is ahead of the close frames.
        self.count += 1
        self._done.clear()
        metrics = self._metrics
        started = time.perf_counter() if metrics is not None else 0.0
        try:
            result = handler(stream, request)
            # A coroutine (an async def) first: inspect.isawaitable costs more.
            if type(result) is types.CoroutineType or inspect.isawaitable(result):
                result = await result
            if metrics is not None:
                metrics.rpc_served(prefix, "ok", time.perf_counter() - started)
            return result
        except Exception as exc:
            if metrics is not None:
                elapsed = time.perf_counter() - started
                metrics.rpc_served(prefix, outcome_of(exc), elapsed)
            raise
        finally:
            self.count -= 1
            if not self.count:
                self._done.set()

    async def wait(self, timeout: float, *, closing: bool = True) -> None:
        """Wait (at most ``timeout`` seconds) until none is running."""
        if not self.count:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            if closing:
                logger.warning("closing with %d request(s) still running", self.count)


class MeshSrpcServer(SrpcServer[C, S], Generic[C, S, MetaT]):
    """An :class:`SrpcServer` that tracks its clients in the mesh ``_mc:<mesh_key>``.

    ``extract_metadata(stream)`` gives the registry metadata of a client (default: a
    snapshot of ``stream.meta``). Call :meth:`mesh_start` once the server is set up
    and :meth:`mesh_stop` before :meth:`close`, or use ``async with server:`` which
    does both. Other keyword arguments are :class:`SrpcServer`'s (``path``,
    ``auth_secret``, ``replay_protection``, ...); with replay protection on (the
    default) a signed handshake is accepted once across every node of the mesh
    (Redis ``SET NX PX``).
    """

    def __init__(
        self,
        client_message: type[C],
        server_message: type[S],
        *,
        mesh_key: str,
        registry_backend: MeshClientRegistryBackend[MetaT] | None = None,
        extract_metadata: Callable[[SrpcStream], MetaT] | None = None,
        heartbeat_interval: float = 5.0,
        node_ttl: float = 15.0,
        request_timeout: float = 10.0,
        leader: LeaderOptions | None = None,
        redis: RedisLike = None,
        direct: DirectSettings | bool | None = None,
        forward_safety_timeout: float = DEFAULT_FORWARD_SAFETY_TIMEOUT,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        metrics: MeshObserver | None = None,
        **srpc_options: Unpack[SrpcServerOptions],
    ) -> None:
        super().__init__(client_message, server_message, **srpc_options)
        # Where Redis is, is resolved (environment included) in mesh_start().
        self._mesh_redis = redis
        self._mesh_key = mesh_key
        # SrpcServer's in-process guard; mesh_start() replaces it with the Redis one,
        # unless the user has set a guard of their own.
        self._mesh_local_replay_guard = self._admission.replay_guard
        self._mesh_replay_guard: RedisReplayGuard | None = None
        moves = DrainMoves()
        self._mesh_moves = moves
        self._mesh_calls = MeshCalls(
            self,
            invoke_stream,
            self._mesh_is_running,
            request_timeout=request_timeout,
            moves=moves,
            metrics=metrics,
        )
        service: MeshClientService[MetaT] = MeshClientService(
            mesh_key,
            self._mesh_calls.serve_forward,
            client_update_meta_fn=self._mesh_apply_client_metadata,
            registry_backend=registry_backend,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            request_timeout=request_timeout,
            leader=leader,
            direct=direct,
            redis=redis,
            forward_safety_timeout=forward_safety_timeout,
            client_held_fn=self._mesh_calls.holds_client,
            probe_timeout=probe_timeout,
        )
        self._mesh_client_service = service
        self._mesh = MeshRegistrar(
            self,
            service,
            extract_metadata=extract_metadata,
            request_timeout=request_timeout,
            moves=moves,
            metrics=metrics,
        )
        self._mesh_calls.bind(service)
        service.mesh.set_rejoined_callback(self._mesh.restore)
        self._mesh_requests = _RunningRequests(metrics)
        if metrics is not None:
            service.observer = metrics
            metrics.set_connected_clients(self._mesh_count_connected)

    # --- public API ----------------------------------------------------------------

    @property
    def mesh_instance_id(self) -> int:
        """This node's mesh instance id; 0 when the mesh is not running."""
        return self._mesh_client_service.instance_id

    @property
    def client_registry(self) -> MeshClientRegistry[MetaT]:
        """The client registry as seen from this node."""
        return self._mesh_client_service.client_registry

    @property
    def is_leader(self) -> bool:
        """True while this node holds the mesh's cleanup leader lock.

        The leader removes dead nodes and reports their clients
        (:meth:`on_node_clients_orphaned` runs there).
        """
        return self._mesh_client_service.mesh.is_leader

    async def get_nodes(self) -> list[MeshNode]:
        """Every node of this server's mesh by instance id; ``self`` marks this one.

        A dead node stays listed until the leader removes it. Raises
        :class:`MeshNotRunningError` before :meth:`mesh_start`.
        """
        return await self._mesh_client_service.mesh.get_nodes()

    async def mesh_start(self) -> None:
        """Join the mesh and register every stream that connected before (active or pending).

        Where Redis is (``redis=``, else the environment) is resolved here, not in the
        constructor. From here on, replay protection is shared by every node.
        """
        settings = resolve_redis_settings(self._mesh_redis)
        await self._mesh_client_service.start()
        guard = self._admission.replay_guard
        if guard is not None and guard is self._mesh_local_replay_guard and not settings.is_memory:
            if self._mesh_replay_guard is None:
                self._mesh_replay_guard = RedisReplayGuard(settings, self._mesh_key)
            # Shared by all nodes: a handshake accepted here is refused everywhere.
            self.set_replay_guard(self._mesh_replay_guard)
        await self._mesh.start()

    async def health(self, *, timeout: float = 1.0) -> MeshHealth:
        """This node's health: mesh joined, Redis answering a PING within ``timeout``
        seconds, heartbeat age, leader, open streams. ``ready`` sums it up."""
        mesh = self._mesh_client_service.mesh
        joined = self._mesh.running and mesh.is_running
        reachable, error = False, None
        if joined:
            try:
                async with asyncio.timeout(timeout):
                    await mesh.ping()
                reachable = True
            except Exception as exc:
                raise_if_cancelling()
                error = f"Redis: {str(exc) or type(exc).__name__}"
        else:
            error = "not joined to the mesh"
        return MeshHealth(
            mesh_joined=joined,
            redis_reachable=reachable,
            heartbeat_age=mesh.heartbeat_age,
            node_ttl=mesh.node_ttl,
            leader=mesh.is_leader,
            node_id=mesh.instance_id,
            open_streams=len(self.streams_by_id),
            error=error,
        )

    async def mesh_stop(self) -> None:
        """Remove this node's clients from the registry and leave the mesh.

        Call it before :meth:`close`; the streams stay open. Other nodes report no
        orphans for this node.
        """
        stopping = {
            "mesh_key": self._mesh_client_service.key,
            "node_id": self.mesh_instance_id,
            "clients": len(self.streams_by_client_id),
        }
        await self._mesh.stop()
        await self._mesh_client_service.stop()
        if stopping["node_id"]:
            logger.info(
                "mesh %s: node %d left the mesh with %d client(s)",
                stopping["mesh_key"],
                stopping["node_id"],
                stopping["clients"],
                extra=stopping,
            )

    async def close(self) -> None:
        """Let running client requests answer (up to ``close_timeout``), then close every stream.

        Call :meth:`mesh_stop` first, so no node routes new calls here meanwhile. Returns
        once the streams' registry clean-up and lifecycle callbacks have run (bounded).
        """
        await self._mesh_requests.wait(self.close_timeout)
        await super().close()
        # The streams' unregister steps and callbacks run in the background; finish
        # them (bounded) so nothing is left pending when the caller's loop ends.
        await self._mesh.drain(self.close_timeout)
        if self._mesh_replay_guard is not None:
            await self._mesh_replay_guard.aclose()

    async def drain(self, timeout: float | None = None) -> None:
        """Hand every client to the other nodes (a rolling deploy, a SIGTERM).

        Refuses new connections (503), lets running requests answer, then closes each
        stream with 1012 (``"restart"``): SDK clients reconnect at once, to their next
        URL (behind a load balancer: another node, this one refusing). A client that
        reappears on another node within ``timeout`` (default ``node_ttl``) is
        reported connected there and never disconnected here; the others are reported
        disconnected once it passed. Then call :meth:`mesh_stop` and :meth:`close`.
        """
        grace = self._mesh_client_service.mesh.node_ttl if timeout is None else timeout
        self._mesh_moves.grace = grace if self._mesh.running else None
        await self._mesh_requests.wait(self.close_timeout, closing=False)
        await super().drain()
        await self._mesh.drain(self.close_timeout, grace=grace)

    async def __aenter__(self) -> Self:
        """``async with server:`` joins the mesh (:meth:`mesh_start`)."""
        await self.mesh_start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Leave the mesh (:meth:`mesh_stop`), then :meth:`close` the server."""
        try:
            await self.mesh_stop()
        finally:
            await self.close()

    def register_message_handler(self, prefix: str, handler: ServerMessageHandler) -> None:
        """Handle the client's ``<prefix>Request``: handler(stream, request) -> response."""
        tracked = functools.partial(self._mesh_requests.track, prefix, handler)
        super().register_message_handler(prefix, tracked)

    async def update_client_metadata(self, client_id: str, metadata: Any) -> bool:
        """Merge keys into a client's metadata from any node; False if it is not connected.

        The owning node merges the mapping into ``stream.meta`` (a key set to None is
        deleted; keys not given are kept) and writes the registry once. With a custom
        ``extract_metadata`` whose metadata is not a mapping, it replaces it instead.
        Generated servers type ``metadata`` as the app's ``ClientMetaUpdateDict``.
        """
        return await self._mesh_client_service.update_client_metadata(client_id, metadata)

    if TYPE_CHECKING:
        # Generated subclasses add Literal-keyed overloads; see GENERATOR.md typing notes.
        def invoke(self, *args: Any, **kwargs: Any) -> Any: ...
        def broadcast(self, *args: Any, **kwargs: Any) -> Any: ...

    else:

        async def invoke(self, stream_or_client_id, prefix, request, timeout=None):
            """Call a client: ``await invoke(stream_or_client_id, "dNotify", request)``.

            A stream is called directly; a client id wherever the client is connected.
            ``timeout`` None means ``request_timeout`` (10 s by default) on every path.
            """
            return await self._mesh_calls.invoke(stream_or_client_id, prefix, request, timeout)

        async def broadcast(self, type, data, *, skip_self=False):
            """Send ``data`` to the ``type`` broadcast handler of every node."""
            await self._mesh_client_service.broadcast(type, data, skip_self=skip_self)

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``."""
        self._mesh_client_service.register_broadcast_handler(type, handler)

    def on_client_connected(self, handler: ClientLifecycleHandler) -> None:
        """Run ``handler(client_id, metadata)`` once a client is activated (and, with the
        mesh running, registered).

        Mesh or no mesh: a stream that activated before :meth:`mesh_start` is reported
        then, and registered by :meth:`mesh_start`. The client's requests wait until
        the handlers have finished.
        """
        self._mesh.callbacks.connected.append(handler)

    def on_client_disconnected(self, handler: ClientLifecycleHandler) -> None:
        """Run ``handler(client_id, metadata)`` when a client really left.

        Not when it reconnected to this or another node, and not for a stream that
        never activated.
        """
        self._mesh.callbacks.disconnected.append(handler)

    def on_node_clients_orphaned(self, handler: NodeClientsOrphanedCallback) -> None:
        """Run ``handler(node_id, clients)`` on the leader, once per dead node.

        ``clients`` are the ones that had not reconnected elsewhere.
        """
        self._mesh_client_service.on_node_clients_orphaned(handler)

    # --- stream lifecycle hooks ------------------------------------------------------

    async def _on_stream_established(self, stream: SrpcStream) -> None:
        await self._mesh.established(stream)

    async def _on_stream_activating(self, stream: SrpcStream) -> None:
        if not await self._mesh.activating(stream):
            logger.warning("client %r lost its reservation before activation", stream.client_id)
            await self.close_stream(
                stream, CLOSE_CODES["supersede"], "supersede", "Client moved to another node"
            )

    async def _on_stream_activated(self, stream: SrpcStream) -> None:
        await self._mesh.activated(stream)

    async def _on_stream_closed(self, stream: SrpcStream, cause: CloseCause) -> None:
        self._mesh.closed(stream, cause)

    # --- what the mesh calls ---------------------------------------------------------

    def _mesh_is_running(self) -> bool:
        return self._mesh.running

    def _mesh_count_connected(self) -> int:
        """Clients whose stream here is activated (the metrics' connected-clients gauge)."""
        return sum(1 for stream in self.streams_by_client_id.values() if stream.is_activated)

    async def _mesh_apply_client_metadata(self, client_id: str, metadata: Any) -> bool:
        return await self._mesh.apply_client_metadata(client_id, metadata)
