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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import betterproto2

from .client_callbacks import ClientLifecycleHandler
from .client_service import (
    DEFAULT_FORWARD_SAFETY_TIMEOUT,
    MeshClientService,
    NodeClientsOrphanedCallback,
)
from .leader import LeaderOptions
from .mesh import BroadcastHandler
from .mesh_calls import MeshCalls
from .mesh_registrar import MeshRegistrar
from .registry.base import MeshClientRegistryBackend
from .registry.registry import MeshClientRegistry
from .replay import RedisReplayGuard
from .settings import RedisLike, resolve_redis_settings
from .srpc.protocol import CLOSE_CODES, CloseCause
from .srpc.server import ServerMessageHandler, SrpcServer
from .srpc.stream import SrpcStream

__all__ = ["ClientLifecycleHandler", "MeshSrpcServer"]

logger = logging.getLogger("meshsrpc.mesh_server")

C = TypeVar("C", bound=betterproto2.Message)
S = TypeVar("S", bound=betterproto2.Message)
MetaT = TypeVar("MetaT")


class _RunningRequests:
    """Counts the client requests whose handlers are running, so close() lets them answer."""

    def __init__(self) -> None:
        self.count = 0
        self._done = asyncio.Event()
        self._done.set()

    async def track(self, handler: ServerMessageHandler, stream: SrpcStream, request: Any) -> Any:
        """Run ``handler(stream, request)``, counted."""
        # SRPC queues the reply in the same step the handler returns in, so once the
        # count drops to zero every reply is ahead of the close frames.
        self.count += 1
        self._done.clear()
        try:
            result = handler(stream, request)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self.count -= 1
            if not self.count:
                self._done.set()

    async def wait(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until none is running."""
        if not self.count:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
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
        forward_safety_timeout: float = DEFAULT_FORWARD_SAFETY_TIMEOUT,
        **srpc_options: Any,
    ) -> None:
        super().__init__(client_message, server_message, **srpc_options)
        self._mesh_replay_guard: RedisReplayGuard | None = None
        settings = resolve_redis_settings(redis)
        if self._replay_guard is not None and not settings.is_memory:
            # Shared by all nodes: a handshake accepted here is refused everywhere.
            self._mesh_replay_guard = RedisReplayGuard(settings, mesh_key)
            self.set_replay_guard(self._mesh_replay_guard)
        self._mesh_calls = MeshCalls(self, self._invoke_stream, self._mesh_is_running)
        service: MeshClientService[MetaT] = MeshClientService(
            mesh_key,
            self._mesh_calls.serve_forward,
            client_update_meta_fn=self._mesh_apply_client_metadata,
            registry_backend=registry_backend,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            request_timeout=request_timeout,
            leader=leader,
            redis=redis,
            forward_safety_timeout=forward_safety_timeout,
        )
        self._mesh_client_service = service
        self._mesh = MeshRegistrar(
            self, service, extract_metadata=extract_metadata, request_timeout=request_timeout
        )
        self._mesh_calls.bind(service)
        service.mesh.set_rejoined_callback(self._mesh.restore)
        self._mesh_requests = _RunningRequests()

    # --- public API ----------------------------------------------------------------

    @property
    def mesh_instance_id(self) -> int:
        """This node's mesh instance id; 0 when the mesh is not running."""
        return self._mesh_client_service.instance_id

    @property
    def client_registry(self) -> MeshClientRegistry[MetaT]:
        """The client registry as seen from this node."""
        return self._mesh_client_service.client_registry

    async def mesh_start(self) -> None:
        """Join the mesh and register every stream that connected before (active or pending)."""
        await self._mesh_client_service.start()
        await self._mesh.start()

    async def mesh_stop(self) -> None:
        """Remove this node's clients from the registry and leave the mesh.

        Call it before :meth:`close`; the streams stay open. Other nodes report no
        orphans for this node.
        """
        await self._mesh.stop()
        await self._mesh_client_service.stop()

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
        tracked = functools.partial(self._mesh_requests.track, handler)
        super().register_message_handler(prefix, tracked)

    async def update_client_metadata(self, client_id: str, metadata: MetaT) -> bool:
        """Replace a client's metadata from any node; False if the client is not connected.

        The owning node merges a mapping into ``stream.meta`` and writes the registry
        once.
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
            logger.warning("client %s lost its reservation before activation", stream.client_id)
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

    async def _mesh_apply_client_metadata(self, client_id: str, metadata: Any) -> bool:
        return await self._mesh.apply_client_metadata(client_id, metadata)
