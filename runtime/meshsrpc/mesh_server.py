"""MeshSrpcServer: an SrpcServer whose clients are in the mesh registry, callable from any node.

This is the only place where SRPC and the mesh meet. Per stream:

- WebSocket accepted → the client is *reserved* in the registry (hidden, not yet
  invocable), unless another node holds it: then plain v2 is refused with 4001, and
  protocol v1, or v2 with ``_supersede=1``, waits to take it over at activation.
- connection handlers done → the reservation is *activated*, or the takeover written
  (the other node is told to close its stream with 4002): now invocable through the
  mesh; then ``on_client_connected`` runs. A takeover that fails before this point
  leaves the client on its node, undisturbed.
- stream closed → if this stream holds the client's entry, the client is
  unregistered (ownership-safe: a no-op when it has already moved), and
  ``on_client_disconnected`` runs only if this node still owned it, i.e. the client
  really left.

Registry writes for one client run strictly in order (a per-client queue); the
connected/disconnected callbacks run in a second per-client queue, so a slow
callback never holds up a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, Unpack, cast

import betterproto2

from ._serial import KeyedSerialQueue
from ._tasks import cancel_and_wait, raise_if_cancelling
from ._tsproto_json import message_from_object, message_to_object
from .client_service import (
    DEFAULT_FORWARD_SAFETY_TIMEOUT,
    DEFAULT_PROBE_TIMEOUT,
    MeshClientService,
    NodeClientsOrphanedCallback,
)
from .direct import DirectSettings
from .errors import (
    ClientConflictError,
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    SrpcConflictError,
    SrpcError,
)
from .health import MeshHealth
from .leader import LeaderOptions
from .mesh import BroadcastHandler, MeshNode
from .observer import CallPlace, MeshObserver, outcome_of
from .registry.base import MeshClientRegistryBackend
from .registry.registry import MeshClientRegistry
from .replay import RedisReplayGuard
from .settings import RedisLike, resolve_redis_settings
from .srpc.options import SrpcServerOptions
from .srpc.protocol import CLOSE_CODES, CloseCause
from .srpc.server import ServerMessageHandler, SrpcServer
from .srpc.stream import SrpcStream, StreamMeta

__all__ = ["ClientLifecycleHandler", "MeshSrpcServer", "MeshSrpcServerOptions"]

logger = logging.getLogger("meshsrpc.mesh_server")

C = TypeVar("C", bound=betterproto2.Message)
S = TypeVar("S", bound=betterproto2.Message)
MetaT = TypeVar("MetaT")

ClientLifecycleHandler: TypeAlias = Callable[[str, Any], Any]
"""handler(client_id, metadata), sync or async; errors are logged."""

_MISSING: Any = object()
# Re-registering a client after Redis lost it: attempts before giving up.
_RESTORE_ATTEMPTS = 5


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


class _MessageJson(dict[str, Any]):
    """A message's JSON (the ts-proto object shape, WIRE.md §3) that still carries the message.

    MeshClientService hands ``data`` to a local client unchanged and JSON-encodes it
    only for another node, so the local path skips the decode/encode round trip.
    """

    __slots__ = ("message",)

    def __init__(self, message: betterproto2.Message) -> None:
        super().__init__(message_to_object(message))
        self.message = message


def _snapshot(value: Any) -> Any:
    """A copy that later mutations of the source cannot change (one level deep)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _differs(old: Any, new: Any) -> bool:
    return type(old) is not type(new) or old != new


class _Presence:
    """The connection of a client reported connected on this node, with its latest metadata."""

    __slots__ = ("metadata", "stream_id")

    def __init__(self, stream_id: str, metadata: Any) -> None:
        self.stream_id = stream_id
        self.metadata = metadata


class MeshSrpcServer(SrpcServer[C, S], Generic[C, S, MetaT]):
    """An :class:`SrpcServer` that tracks its clients in the mesh ``_mc:<mesh_key>``.

    ``extract_metadata(stream)`` gives the registry metadata of a client (default: a
    snapshot of ``stream.meta``). Call :meth:`mesh_start` once the server is set up
    and :meth:`mesh_stop` before :meth:`close`. Other keyword arguments are
    :class:`SrpcServer`'s (``path``, ``auth_secret``, ``replay_protection``, ...);
    with replay protection on (the default) a signed handshake is accepted once
    across every node of the mesh (Redis ``SET NX PX``).
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
        self._mesh_local_replay_guard = self._replay_guard
        self._mesh_replay_guard: RedisReplayGuard | None = None
        self._mesh_client_service: MeshClientService[MetaT] = MeshClientService(
            mesh_key,
            self._mesh_invoke_local_client,
            client_update_meta_fn=self._mesh_apply_client_metadata,
            registry_backend=registry_backend,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            request_timeout=request_timeout,
            leader=leader,
            direct=direct,
            redis=redis,
            forward_safety_timeout=forward_safety_timeout,
            client_held_fn=self._mesh_holds_client,
            probe_timeout=probe_timeout,
        )
        self._mesh_client_service.on_client_superseded(self._mesh_kick_superseded)
        self._mesh_client_service.set_kick_handler(self._mesh_kick_by_operator)
        self._mesh_client_service.mesh.set_rejoined_callback(self._mesh_restore_registry)
        self._mesh_extract_metadata = extract_metadata
        self._mesh_connected_handlers: list[ClientLifecycleHandler] = []
        self._mesh_disconnected_handlers: list[ClientLifecycleHandler] = []
        # What the registry holds (or is about to) per client: compared to skip
        # redundant writes, and handed to the connected/disconnected callbacks.
        self._mesh_metadata: dict[str, MetaT] = {}
        self._mesh_gated: set[str] = set()  # ids of streams past the activation snapshot
        # The registry knows nodes, not streams. Per client, the stream this node's
        # registry entry stands for: only its release may remove the entry. (A stream
        # refused here, or one a newer stream here took over from, must not: it would
        # remove the entry of the stream that holds the client.)
        self._mesh_holders: dict[str, SrpcStream] = {}
        # Per client, the connection on_client_connected last reported here and not yet
        # reported gone. A newer stream here replaces it silently once announced (the
        # client did not leave); the holder's release reports it if the client left.
        self._mesh_present: dict[str, _Presence] = {}
        # Ids of streams taking their client over from another node: the takeover is
        # written (and the other node told to close its stream) at activation, so that a
        # connection that fails before it leaves the client where it was.
        self._mesh_takeovers: set[str] = set()
        self._mesh_sync_scheduled: set[str] = set()
        self._mesh_registry_steps = KeyedSerialQueue()
        self._mesh_callback_steps = KeyedSerialQueue()
        # Our own flag, flipped in the same turn as the backfill is queued, so every
        # registry step of a stream is queued behind its backfill.
        self._mesh_running = False
        self._mesh_request_timeout = request_timeout
        # Clients that left while the registry no longer knew them (unregister found
        # nothing although no takeover closed the stream): client id -> (metadata, when).
        # Redis may have restarted empty (the rejoin tells), or a node that reserved the
        # client died before its kick arrived. Either way, once every node has had time
        # to re-register its clients, one that nobody holds really left: report it.
        self._mesh_unsure: dict[str, tuple[Any, float]] = {}
        self._mesh_rejoined_at = -float("inf")  # loop time of the last rejoin
        self._mesh_reconciler: asyncio.Task[None] | None = None
        # Client requests whose handlers are running; close() lets them answer first.
        self._mesh_requests_running = 0
        self._mesh_requests_done = asyncio.Event()
        self._mesh_requests_done.set()
        # While draining: how long a client sent away may take to reappear elsewhere
        # before it is reported gone, and per client, set when it did (the new node's
        # kickClient).
        self._mesh_drain_grace: float | None = None
        self._mesh_moving: dict[str, asyncio.Event] = {}
        self._mesh_metrics = metrics
        if metrics is not None:
            self._mesh_client_service.observer = metrics
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
        guard = self._replay_guard
        if guard is not None and guard is self._mesh_local_replay_guard and not settings.is_memory:
            if self._mesh_replay_guard is None:
                self._mesh_replay_guard = RedisReplayGuard(settings, self._mesh_key)
            # Shared by all nodes: a handshake accepted here is refused everywhere.
            self.set_replay_guard(self._mesh_replay_guard)
        self._mesh_running = True
        backfill: list[asyncio.Task[None]] = []
        for stream in list(self.streams_by_id.values()):
            if not self._mesh_is_current(stream):
                continue
            self._mesh_watch_meta(stream)
            metadata = self._mesh_take_snapshot(stream)
            active = stream.id in self._mesh_gated
            step = functools.partial(self._mesh_backfill, stream, metadata, active)
            backfill.append(self._mesh_registry_steps.submit(stream.client_id, step))
        if backfill:
            await asyncio.wait(backfill)
        self._mesh_reconciler = asyncio.create_task(self._mesh_reconcile_loop())

    async def health(self, *, timeout: float = 1.0) -> MeshHealth:
        """This node's health: mesh joined, Redis answering a PING within ``timeout``
        seconds, heartbeat age, leader, open streams. ``ready`` sums it up."""
        mesh = self._mesh_client_service.mesh
        joined = self._mesh_running and mesh.is_running
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
        self._mesh_running = False
        if self._mesh_reconciler is not None:
            await cancel_and_wait([self._mesh_reconciler])
            self._mesh_reconciler = None
        # A reservation still in flight could land after the cleanup; let it finish.
        await self._mesh_registry_steps.drain(self._mesh_request_timeout)
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
        if self._mesh_requests_running:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self._mesh_requests_done.wait()
            except TimeoutError:
                logger.warning(
                    "closing with %d request(s) still running", self._mesh_requests_running
                )
        await super().close()
        # The streams' unregister steps and callbacks run in the background; finish
        # them (bounded) so nothing is left pending when the caller's loop ends.
        await self._mesh_registry_steps.drain(self._mesh_request_timeout)
        await self._mesh_callback_steps.drain(self.close_timeout)
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
        self._mesh_drain_grace = grace if self._mesh_running else None
        if self._mesh_requests_running:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self._mesh_requests_done.wait()
            except TimeoutError:
                pass
        await super().drain()
        await self._mesh_registry_steps.drain(grace + self._mesh_request_timeout)
        await self._mesh_callback_steps.drain(self.close_timeout)

    def register_message_handler(self, prefix: str, handler: ServerMessageHandler) -> None:
        """Handle the client's ``<prefix>Request``: handler(stream, request) -> response."""
        super().register_message_handler(
            prefix, functools.partial(self._mesh_track, prefix, handler)
        )

    async def _mesh_track(
        self, prefix: str, handler: ServerMessageHandler, stream: SrpcStream, request: Any
    ) -> Any:
        # SRPC queues the reply in the same step the handler returns in, so once the
        # count drops to zero every reply is ahead of the close frames.
        self._mesh_requests_running += 1
        self._mesh_requests_done.clear()
        metrics = self._mesh_metrics
        started = time.perf_counter() if metrics is not None else 0.0
        try:
            result = handler(stream, request)
            if inspect.isawaitable(result):
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
            self._mesh_requests_running -= 1
            if not self._mesh_requests_running:
                self._mesh_requests_done.set()

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
            if self._mesh_metrics is not None:
                return await self._mesh_invoke_metered(
                    stream_or_client_id, prefix, request, timeout
                )
            return await self._mesh_invoke_anywhere(stream_or_client_id, prefix, request, timeout)

        async def broadcast(self, type, data, *, skip_self=False):
            """Send ``data`` to the ``type`` broadcast handler of every node."""
            await self._mesh_client_service.broadcast(type, data, skip_self=skip_self)

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``."""
        self._mesh_client_service.register_broadcast_handler(type, handler)

    def on_client_connected(self, handler: ClientLifecycleHandler) -> None:
        """Run ``handler(client_id, metadata)`` once a client is activated and registered.

        A stream that connected before :meth:`mesh_start` is reported when the mesh
        start registers it.
        """
        self._mesh_connected_handlers.append(handler)

    def on_client_disconnected(self, handler: ClientLifecycleHandler) -> None:
        """Run ``handler(client_id, metadata)`` when a client really left.

        Not when it reconnected to this or another node, and not for a stream that
        never activated.
        """
        self._mesh_disconnected_handlers.append(handler)

    def on_node_clients_orphaned(self, handler: NodeClientsOrphanedCallback) -> None:
        """Run ``handler(node_id, clients)`` on the leader, once per dead node.

        ``clients`` are the ones that had not reconnected elsewhere.
        """
        self._mesh_client_service.on_node_clients_orphaned(handler)

    # --- calling clients -------------------------------------------------------------

    async def _mesh_invoke_metered(
        self,
        target: SrpcStream | str,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None,
    ) -> Any:
        """:meth:`_mesh_invoke_anywhere`, timed for the metrics (only when they are on)."""
        metrics = self._mesh_metrics
        assert metrics is not None
        here = isinstance(target, SrpcStream) or target in self.streams_by_client_id
        place: CallPlace = "local" if here else "remote"
        started = time.perf_counter()
        try:
            result = await self._mesh_invoke_anywhere(target, prefix, request, timeout)
        except Exception as exc:
            metrics.client_called(prefix, place, outcome_of(exc), time.perf_counter() - started)
            raise
        metrics.client_called(prefix, place, "ok", time.perf_counter() - started)
        return result

    async def _mesh_invoke_anywhere(
        self,
        target: SrpcStream | str,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None,
    ) -> Any:
        if timeout is None:  # one default, wherever the client is (API: request_timeout)
            timeout = self._mesh_request_timeout
        if isinstance(target, SrpcStream):
            return await self._invoke_stream(target, prefix, request, timeout)
        request_call = self.server_schema.lookup(prefix, request=True)
        response_call = self.client_schema.lookup(prefix, request=False)
        if request_call is None or response_call is None:
            raise ValueError(f"unknown call prefix {prefix!r}")
        if not isinstance(request, request_call.message_cls):
            raise TypeError(
                f"{prefix} expects {request_call.message_cls.__name__}, "
                f"got {type(request).__name__}"
            )
        local = self.streams_by_client_id.get(target)
        if not self._mesh_client_service.is_running:
            here = " (it is connected to this server)" if local is not None else ""
            raise ClientNotFoundError(
                target,
                f"cannot reach client {target!r}{here}: the mesh is not running on this"
                " server; call mesh_start() first",
            )
        if local is not None and local.is_activated and self._mesh_running:
            # The client is here: no registry round trip, no JSON. (A takeover whose
            # kick is still on its way may route one last call to this stream.)
            return await self._mesh_call_here(target, request_call.prefix, request, timeout)
        result = await self._mesh_client_service.invoke(
            target, request_call.prefix, _MessageJson(request), timeout
        )
        if isinstance(result, _MessageJson):
            return result.message
        if not isinstance(result, dict):
            raise ClientInvocationError(f"{prefix}: the client's node sent no response message")
        return message_from_object(response_call.message_cls, result)

    async def _mesh_invoke_local_client(
        self,
        client_id: str,
        prefix: str,
        data: Any,
        timeout: float | None,
    ) -> _MessageJson:
        """MeshClientService's ``client_invoke_fn``: call a client whose stream is here."""
        if isinstance(data, _MessageJson):
            request = data.message
        else:
            call = self.server_schema.lookup(prefix, request=True)
            if call is None:
                raise ValueError(f"unknown call prefix {prefix!r}")
            request = message_from_object(call.message_cls, data)
        return _MessageJson(await self._mesh_call_here(client_id, prefix, request, timeout))

    async def _mesh_call_here(
        self, client_id: str, prefix: str, request: betterproto2.Message, timeout: float | None
    ) -> Any:
        stream = self.streams_by_client_id.get(client_id)
        if stream is None or not stream.is_activated or not stream.is_open:
            raise ClientDisconnectedError(client_id)
        try:
            return await self._invoke_stream(stream, prefix, request, timeout)
        except SrpcError as exc:
            if not stream.is_open:
                raise ClientDisconnectedError(client_id) from exc
            raise

    async def _mesh_kick_superseded(self, client_id: str) -> bool:
        """The client registered on another node: close our stream of it with 4002."""
        moving = self._mesh_moving.get(client_id)
        if moving is not None:
            moving.set()  # a client this draining node sent away arrived there
        stream = self.streams_by_client_id.get(client_id)
        if stream is None:
            return False
        # A kick can be overtaken: the client came back here, superseding that node in
        # turn, before its kick arrived. Then the registry names us; keep the stream.
        try:
            owner = await self._mesh_client_service.client_registry.get_client(client_id)
        except Exception:
            owner = None  # cannot tell: do as the other node asked
        if owner is not None and owner.node_id == self.mesh_instance_id:
            logger.info("ignoring a stale kick of client %r", client_id)
            return False
        if self.streams_by_client_id.get(client_id) is not stream:
            return False
        logger.info("client %r moved to another node; closing its stream here", client_id)
        await self.close_stream(
            stream, CLOSE_CODES["supersede"], "supersede", "Superseded by a connection elsewhere"
        )
        return True

    def _mesh_holds_client(self, client_id: str) -> bool:
        """Answer another node's probe: is a live connection of the client here?"""
        stream = self.streams_by_client_id.get(client_id)
        return stream is not None and stream.is_open

    async def _mesh_kick_by_operator(self, client_id: str) -> bool:
        """An operator asked (``meshsrpc kick``): close the client's stream here with 1000."""
        stream = self.streams_by_client_id.get(client_id)
        if stream is None or not stream.is_open:
            return False
        await self.close_stream(stream, CLOSE_CODES["disconnect"], "disconnect", "Kicked")
        return True

    # --- stream lifecycle hooks ------------------------------------------------------

    async def _on_stream_established(self, stream: SrpcStream) -> None:
        self._mesh_watch_meta(stream)
        metadata = self._mesh_take_snapshot(stream)
        if not self._mesh_running:
            return
        step = functools.partial(self._mesh_reserve, stream, metadata)
        await asyncio.shield(self._mesh_registry_steps.submit(stream.client_id, step))

    async def _on_stream_activating(self, stream: SrpcStream) -> None:
        metadata = self._mesh_take_snapshot(stream)
        self._mesh_gated.add(stream.id)
        if not self._mesh_running:
            return
        step = functools.partial(self._mesh_activate, stream, metadata)
        if not await asyncio.shield(self._mesh_registry_steps.submit(stream.client_id, step)):
            logger.warning("client %r lost its reservation before activation", stream.client_id)
            await self.close_stream(
                stream, CLOSE_CODES["supersede"], "supersede", "Client moved to another node"
            )

    async def _on_stream_activated(self, stream: SrpcStream) -> None:
        if self._mesh_running:
            self._mesh_announce(stream)

    async def _on_stream_closed(self, stream: SrpcStream, cause: CloseCause) -> None:
        self._mesh_gated.discard(stream.id)
        self._mesh_takeovers.discard(stream.id)
        meta = stream.meta
        if isinstance(meta, StreamMeta) and self._mesh_is_our_watch(meta):
            meta.on_change = None
        # Not awaited: the disconnect handlers need not wait for Redis.
        step = functools.partial(self._mesh_release, stream, cause)
        self._mesh_registry_steps.submit(stream.client_id, step)

    # --- registry steps (run in the client's registry queue) ---------------------------

    async def _mesh_reserve(self, stream: SrpcStream, metadata: MetaT) -> None:
        if not self._mesh_is_current(stream):
            return
        previous = self._mesh_take_hold(stream)
        try:
            # Never supersede here: another node's entry stays until activation.
            await self._mesh_client_service.reserve_client(
                stream.client_id, metadata, allow_supersede=False
            )
        except ClientConflictError as exc:
            self._mesh_give_up_hold(stream, previous)
            if _allows_supersede(stream):
                self._mesh_takeovers.add(stream.id)
                return
            if self._mesh_metrics is not None:
                self._mesh_metrics.client_conflict()
            # The owner may be dead (not cleaned up yet) or hold a ghost: if it says it
            # has no live connection, or does not answer, take the client over (at
            # activation, as a supersede) instead of refusing it until node_ttl.
            held = await self._mesh_client_service.owner_holds(stream.client_id, exc.owner_node_id)
            if not held and self._mesh_is_current(stream):
                self._mesh_takeovers.add(stream.id)
                return
            logger.info(
                "refusing %r: connected to node %d (protocol v2)",
                stream.client_id,
                exc.owner_node_id,
            )
            raise SrpcConflictError("Client ID already connected on another node") from exc

    def _mesh_take_hold(self, stream: SrpcStream) -> SrpcStream | None:
        """Make ``stream`` the holder of its client's entry before writing it; returns the
        previous holder. Before, not after: a write whose reply is lost may still have
        happened, and then this stream's release must remove it."""
        previous = self._mesh_holders.get(stream.client_id)
        self._mesh_holders[stream.client_id] = stream
        return previous

    def _mesh_give_up_hold(self, stream: SrpcStream, previous: SrpcStream | None) -> None:
        """The write was refused (nothing written): the previous holder, if any, stays."""
        if self._mesh_holders.get(stream.client_id) is not stream:
            return
        if previous is None:
            del self._mesh_holders[stream.client_id]
        else:
            self._mesh_holders[stream.client_id] = previous

    async def _mesh_activate(self, stream: SrpcStream, metadata: MetaT) -> bool:
        if not self._mesh_is_current(stream):
            return False
        service = self._mesh_client_service
        if stream.id in self._mesh_takeovers:
            self._mesh_takeovers.discard(stream.id)
            self._mesh_take_hold(stream)
            # Supersedes the other node, which is told to close its stream.
            return await service.register_client(stream.client_id, metadata, allow_supersede=True)
        try:
            return await service.activate_client(stream.client_id, metadata)
        except ClientConflictError:
            return False

    async def _mesh_backfill(self, stream: SrpcStream, metadata: MetaT, active: bool) -> None:
        if not self._mesh_is_current(stream):
            return
        client_id = stream.client_id
        allow_supersede = _allows_supersede(stream)
        previous = self._mesh_take_hold(stream)
        try:
            if active:
                registered = await self._mesh_client_service.register_client(
                    client_id, metadata, allow_supersede=allow_supersede
                )
            else:
                await self._mesh_client_service.reserve_client(
                    client_id, metadata, allow_supersede=allow_supersede
                )
                registered = True
        except ClientConflictError:
            registered = False
        except Exception:
            logger.exception("could not register client %r at mesh start", client_id)
            return
        if not registered:
            self._mesh_give_up_hold(stream, previous)
            logger.info("closing %r: it is connected to another node", client_id)
            await self.close_stream(
                stream, CLOSE_CODES["conflict"], "conflict", "Client ID already connected"
            )
            return
        if active and self._mesh_is_current(stream):
            self._mesh_announce(stream)

    async def _mesh_release(self, stream: SrpcStream, cause: CloseCause) -> None:
        client_id = stream.client_id
        if client_id not in self.streams_by_client_id:
            # No stream of the client here any more (refused ones too took a snapshot).
            self._mesh_metadata.pop(client_id, None)
        if self._mesh_holders.get(client_id) is not stream:
            # Refused, closed before its reservation, or taken over by a newer stream
            # here: the entry (if any) is another stream's to remove.
            logger.debug("released %r: the stream held no registry entry", client_id)
            return
        del self._mesh_holders[client_id]
        grace = self._mesh_drain_grace
        if (
            cause == "restart"
            and grace is not None
            and self._mesh_running
            and await self._mesh_await_move(client_id, grace)
        ):
            # Reported connected on its new node, which took the entry over: as for a
            # supersede, nothing to remove or report here.
            cause = "supersede"
        # The client's connection reported here: this stream's, or that of an older
        # stream here it took over from before being announced itself.
        presence = self._mesh_present.pop(client_id, None)
        announced = presence is not None
        metadata = presence.metadata if presence is not None else _MISSING
        unreachable = False
        try:
            removed = await self._mesh_client_service.unregister_client(client_id)
        except Exception as exc:
            logger.warning("could not unregister client %r: %s", client_id, exc)
            # Redis is unreachable (or restarting empty, so that a later unregister would
            # find nothing and report nothing). As far as this node knows it still owns
            # the client: a takeover would have closed the stream with "supersede". So
            # the client left; report it now, and retry the unregister below.
            removed = cause != "supersede"
            unreachable = True
        logger.debug(
            "released %r: removed=%s announced=%s cause=%s",
            client_id,
            removed,
            announced,
            cause,
        )
        if not self._mesh_running and announced and cause != "supersede":
            # The node is leaving: mesh_stop() already removed its clients from the
            # registry (so that no node reports them orphaned). Closing the stream is
            # the client leaving; nobody else will ever report it.
            removed = True
        if not removed and announced and cause != "supersede":
            if self._mesh_rejoined_at >= self._mesh_unsure_horizon():
                # Redis lost its data moments ago (a step queued behind a slow one may
                # run after the rejoin): decide now.
                await self._mesh_report_unsure_client(client_id, metadata)
            else:
                self._mesh_remember_unsure(client_id, metadata)
        if removed and announced:
            handlers = self._mesh_disconnected_handlers
            step = functools.partial(self._mesh_run_handlers, handlers, client_id, metadata)
            self._mesh_callback_steps.submit(client_id, step)
        if unreachable:
            await self._mesh_retry_unregister(client_id)

    async def _mesh_await_move(self, client_id: str, grace: float) -> bool:
        """True once the client, sent away by drain(), is registered on another node."""
        moving = self._mesh_moving.setdefault(client_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        try:
            while True:
                try:
                    owner = await self._mesh_client_service.client_registry.get_client(client_id)
                except Exception:
                    owner = None
                if owner is not None and owner.node_id != self.mesh_instance_id:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                # The new node's kickClient wakes us; the registry is read again at
                # least every 0.5 s (a node that sends no kick).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moving.wait(), min(remaining, 0.5))
        finally:
            self._mesh_moving.pop(client_id, None)

    async def _mesh_retry_unregister(self, client_id: str) -> None:
        """Remove a client whose unregister failed once Redis answers again (bounded).

        Runs in the client's registry queue, so a reconnect to this node (queued
        behind it) cannot be removed by it; another node's entry is never touched.
        """
        delay = 0.1
        deadline = asyncio.get_running_loop().time() + self._mesh_request_timeout
        while self._mesh_running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                await self._mesh_client_service.unregister_client(client_id)
                return
            except Exception:
                continue
        logger.warning("gave up unregistering client %r", client_id)

    async def _mesh_restore_registry(self) -> None:
        """The mesh found our entries gone (Redis restarted empty): register our streams again.

        Without this, every client connected here before the restart would be missing
        from the registry (not invocable, and takeable by a plain v2 connection).
        """
        if not self._mesh_running:
            return
        self._mesh_rejoined_at = asyncio.get_running_loop().time()
        self._mesh_report_unsure()
        steps: list[asyncio.Task[None]] = []
        for stream in list(self.streams_by_id.values()):
            if not self._mesh_is_current(stream):
                continue
            active = stream.id in self._mesh_gated
            step = functools.partial(self._mesh_restore, stream, active)
            steps.append(self._mesh_registry_steps.submit(stream.client_id, step))
        if steps:
            await asyncio.wait(steps)
        logger.info("re-registered %d client(s) after the mesh rejoined", len(steps))

    async def _mesh_reconcile_loop(self) -> None:
        """Every node TTL, register again the clients held here that the registry lost.

        A node that reserved one of our clients (a move) and died before its kick
        arrived leaves our stream open and the client owned by nobody; nothing else
        would repair that.
        """
        interval = self._mesh_client_service.mesh.node_ttl
        while self._mesh_running:
            await asyncio.sleep(interval)
            try:
                await self._mesh_reconcile()
            except Exception as exc:
                raise_if_cancelling()
                logger.warning("could not check the registry entries of this node: %s", exc)

    async def _mesh_reconcile(self) -> None:
        # Announced streams only: their activation was written before the listing.
        held = [
            stream
            for stream in list(self.streams_by_id.values())
            if self._mesh_is_announced(stream) and self._mesh_is_current(stream)
        ]
        if not held:
            return
        listed = await self.client_registry.list_clients_for_node()
        registered = {client.client_id for client in listed}
        for stream in held:
            if stream.client_id in registered or not self._mesh_is_current(stream):
                continue
            logger.info("client %r is held here but unregistered; registering it", stream.client_id)
            step = functools.partial(self._mesh_restore, stream, True)
            self._mesh_registry_steps.submit(stream.client_id, step)

    def _mesh_unsure_horizon(self) -> float:
        mesh = self._mesh_client_service.mesh
        return asyncio.get_running_loop().time() - mesh.node_ttl - 2 * mesh.heartbeat_interval

    def _mesh_remember_unsure(self, client_id: str, metadata: Any) -> None:
        unsure = self._mesh_unsure
        unsure.pop(client_id, None)
        loop = asyncio.get_running_loop()
        entry = (metadata, loop.time())
        unsure[client_id] = entry
        # Within a node TTL every live node has heartbeated, noticed a lost registry
        # and re-registered its clients: what is still unowned then was not restored.
        node_ttl = self._mesh_client_service.mesh.node_ttl
        loop.call_later(node_ttl, self._mesh_settle_unsure, client_id, entry)
        # Oldest first (insertion order): forget what is too old to matter, so that
        # ordinary moves do not pile up here.
        horizon = self._mesh_unsure_horizon()
        for old_id, (_meta, left_at) in list(unsure.items()):
            if left_at >= horizon:
                break
            del unsure[old_id]

    def _mesh_report_unsure(self) -> None:
        """Report the clients that left while the registry was empty, unless they came back.

        Only recent ones count: the data was lost at most a few heartbeats before the
        rejoin; older ones were ordinary moves to another node.
        """
        unsure, self._mesh_unsure = self._mesh_unsure, {}
        horizon = self._mesh_unsure_horizon()
        for client_id, (metadata, left_at) in unsure.items():
            if left_at < horizon or client_id in self.streams_by_client_id:
                continue
            step = functools.partial(self._mesh_report_unsure_client, client_id, metadata)
            self._mesh_registry_steps.submit(client_id, step)

    def _mesh_settle_unsure(self, client_id: str, entry: tuple[Any, float]) -> None:
        """Report a client that left unowned, unless a rejoin already dealt with it."""
        if self._mesh_unsure.get(client_id) is not entry or not self._mesh_running:
            return
        del self._mesh_unsure[client_id]
        step = functools.partial(self._mesh_report_unsure_client, client_id, entry[0])
        self._mesh_registry_steps.submit(client_id, step)

    async def _mesh_report_unsure_client(self, client_id: str, metadata: Any) -> None:
        if client_id in self.streams_by_client_id:
            return
        try:
            if await self._mesh_client_service.client_registry.get_client(client_id) is not None:
                logger.debug("unsure %r: registered elsewhere, not reported", client_id)
                return  # it is registered elsewhere now: it moved, it did not leave
        except Exception:
            logger.exception("could not look up client %r", client_id)
        logger.debug("unsure %r: held by nobody, reported as disconnected", client_id)
        handlers = self._mesh_disconnected_handlers
        step = functools.partial(self._mesh_run_handlers, handlers, client_id, metadata)
        self._mesh_callback_steps.submit(client_id, step)

    async def _mesh_restore(self, stream: SrpcStream, active: bool) -> None:
        # A stream that closed since this step was queued is registered all the same:
        # its release is queued behind this step and then finds (and reports) it.
        if self._mesh_holders.get(stream.client_id) is not stream:
            return  # not reserved yet (its reservation follows), or replaced here
        if not self._mesh_running:
            return
        client_id = stream.client_id
        metadata = self._mesh_metadata.get(client_id, _MISSING)
        if metadata is _MISSING:
            metadata = self._mesh_take_snapshot(stream)
        service = self._mesh_client_service
        for attempt in range(_RESTORE_ATTEMPTS):
            try:
                # Never supersede here: a node that registered the client while our
                # entry was gone holds the newer connection.
                if active:
                    registered = await service.register_client(
                        client_id, metadata, allow_supersede=False
                    )
                else:
                    await service.reserve_client(client_id, metadata, allow_supersede=False)
                    registered = True
                break
            except ClientConflictError:
                registered = False
                break
            except Exception:
                # Right after a restart, pooled connections to the old server fail once.
                if attempt + 1 == _RESTORE_ATTEMPTS:
                    logger.exception("could not re-register client %r", client_id)
                    return
                await asyncio.sleep(0.1 * (attempt + 1))
        if not registered and stream.is_open:
            logger.info("client %r moved to another node meanwhile; closing it here", client_id)
            await self.close_stream(
                stream, CLOSE_CODES["supersede"], "supersede", "Client moved to another node"
            )

    async def _mesh_write_metadata(self, stream: SrpcStream, metadata: MetaT) -> bool:
        if not self._mesh_is_current(stream) or not self._mesh_running:
            return False
        return await self._mesh_client_service.client_registry.update_metadata(
            stream.client_id, metadata
        )

    # --- callbacks (run in the client's callback queue) ---------------------------------

    def _mesh_announce(self, stream: SrpcStream) -> None:
        async def announce() -> None:
            if self._mesh_is_announced(stream) or not self._mesh_is_current(stream):
                return
            metadata = self._mesh_metadata.get(stream.client_id, _MISSING)
            if metadata is _MISSING:
                return
            self._mesh_present[stream.client_id] = _Presence(stream.id, metadata)
            await self._mesh_run_handlers(self._mesh_connected_handlers, stream.client_id, metadata)

        self._mesh_callback_steps.submit(stream.client_id, announce)

    async def _mesh_run_handlers(
        self, handlers: list[ClientLifecycleHandler], client_id: str, metadata: Any
    ) -> None:
        for handler in list(handlers):
            try:
                result = handler(client_id, metadata)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("client lifecycle callback failed for %r", client_id)

    # --- metadata ----------------------------------------------------------------------

    def _mesh_take_snapshot(self, stream: SrpcStream) -> MetaT:
        """Extract the stream's registry metadata and remember it as the client's."""
        metadata = self._mesh_extract(stream)
        self._mesh_remember(stream, metadata)
        return metadata

    def _mesh_remember(self, stream: SrpcStream, metadata: MetaT) -> None:
        self._mesh_metadata[stream.client_id] = metadata
        presence = self._mesh_present.get(stream.client_id)
        if presence is not None and presence.stream_id == stream.id:
            presence.metadata = metadata

    def _mesh_extract(self, stream: SrpcStream) -> MetaT:
        if self._mesh_extract_metadata is None:
            return cast(MetaT, dict(stream.meta))
        return cast(MetaT, _snapshot(self._mesh_extract_metadata(stream)))

    def _mesh_watch_meta(self, stream: SrpcStream) -> None:
        meta = stream.meta
        if isinstance(meta, StreamMeta) and not self._mesh_is_our_watch(meta):
            meta.on_change = functools.partial(self._mesh_schedule_meta_sync, stream)

    def _mesh_is_our_watch(self, meta: StreamMeta) -> bool:
        watch = meta.on_change
        return isinstance(watch, functools.partial) and watch.func == self._mesh_schedule_meta_sync

    def _mesh_schedule_meta_sync(self, stream: SrpcStream, _meta: StreamMeta) -> None:
        # Coalesce: however many keys change in this turn of the loop, one sync.
        if stream.id in self._mesh_sync_scheduled:
            return
        self._mesh_sync_scheduled.add(stream.id)
        asyncio.get_running_loop().call_soon(self._mesh_sync_meta, stream)

    def _mesh_sync_meta(self, stream: SrpcStream) -> None:
        self._mesh_sync_scheduled.discard(stream.id)
        if not self._mesh_is_current(stream):
            return
        client_id = stream.client_id
        try:
            metadata = self._mesh_extract(stream)
        except Exception:
            logger.exception("extract_metadata failed for %r", client_id)
            return
        known = self._mesh_metadata.get(client_id, _MISSING)
        if known is not _MISSING and not _differs(known, metadata):
            return
        self._mesh_remember(stream, metadata)
        # Before activation the reservation/activation itself carries the metadata.
        if stream.id in self._mesh_gated and self._mesh_running:
            step = functools.partial(self._mesh_write_metadata_logged, stream, metadata)
            self._mesh_registry_steps.submit(client_id, step)

    async def _mesh_write_metadata_logged(self, stream: SrpcStream, metadata: MetaT) -> None:
        try:
            await self._mesh_write_metadata(stream, metadata)
        except Exception:
            logger.exception("could not sync the metadata of client %r", stream.client_id)

    async def _mesh_apply_client_metadata(self, client_id: str, metadata: Any) -> bool:
        """MeshClientService's ``client_update_meta_fn``: runs on the owning node."""
        stream = self.streams_by_client_id.get(client_id)
        if stream is None or not stream.is_activated or not stream.is_open:
            return False
        previous = self._mesh_metadata.get(client_id, _MISSING)
        if isinstance(metadata, Mapping):
            # Merging notifies the meta watcher; setting the cache first makes its
            # sync see no change, so the registry is written once, below.
            _merge(stream.meta, metadata)
            snapshot = self._mesh_take_snapshot(stream)
        else:
            snapshot = cast(MetaT, _snapshot(metadata))
            self._mesh_remember(stream, snapshot)
        step = functools.partial(self._mesh_write_metadata, stream, snapshot)
        try:
            updated = await asyncio.shield(self._mesh_registry_steps.submit(client_id, step))
        except Exception:
            logger.exception("could not update the metadata of client %r", client_id)
            updated = False
        if not updated and self._mesh_metadata.get(client_id, _MISSING) is snapshot:
            if previous is _MISSING:
                self._mesh_metadata.pop(client_id, None)
            else:
                self._mesh_remember(stream, previous)
        return updated

    # --- helpers -----------------------------------------------------------------------

    def _mesh_count_connected(self) -> int:
        """Clients whose stream here is activated (the metrics' connected-clients gauge)."""
        return sum(1 for stream in self.streams_by_client_id.values() if stream.is_activated)

    def _mesh_is_announced(self, stream: SrpcStream) -> bool:
        """True once on_client_connected ran for ``stream`` (until its client is reported gone)."""
        presence = self._mesh_present.get(stream.client_id)
        return presence is not None and presence.stream_id == stream.id

    def _mesh_is_current(self, stream: SrpcStream) -> bool:
        """True while ``stream`` is open and the newest stream of its client here."""
        return stream.is_open and self.streams_by_client_id.get(stream.client_id) is stream


def _merge(meta: dict[str, Any], update: Mapping[str, Any]) -> None:
    """update_client_metadata's merge: None deletes a key (JSON has no "absent" value)."""
    for key, value in update.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value


def _allows_supersede(stream: SrpcStream) -> bool:
    """Protocol v1 always takes over; v2 only with ``_supersede=1``."""
    return stream.protocol_version < 2 or stream.supersede
