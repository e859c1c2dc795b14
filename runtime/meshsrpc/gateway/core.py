"""What every generated gateway does, whatever the app: relay a call, list, watch, broadcast.

The generated ``<Name>Gateway`` (``meshgen --gateway``) maps its typed rpcs onto a
:class:`MeshGateway`; this module knows nothing of any app's messages.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import betterproto2
from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from .._tsproto_json import message_from_object, message_to_object
from ..mesh_server import MeshSrpcServer
from ..registry.base import RegisteredClient
from .presence import PresenceChange, PresenceFeed, PresenceOverflowError
from .status import grpc_error

__all__ = [
    "Invoke",
    "MeshGateway",
    "broadcast_payload",
    "client_metadata",
    "connected_at",
    "current_stream",
    "with_current_stream",
]

RequestT_contra = TypeVar("RequestT_contra", bound=betterproto2.Message, contravariant=True)
ResponseT_co = TypeVar("ResponseT_co", bound=betterproto2.Message, covariant=True)
ResponseT = TypeVar("ResponseT", bound=betterproto2.Message)
RequestT = TypeVar("RequestT", bound=betterproto2.Message)
MessageT = TypeVar("MessageT", bound=betterproto2.Message)

current_stream: contextvars.ContextVar[Stream[Any, Any] | None] = contextvars.ContextVar(
    "meshsrpc_gateway_stream", default=None
)
"""The grpclib stream of the rpc being served (for its deadline and metadata)."""


class Invoke(Protocol[RequestT_contra, ResponseT_co]):
    """A generated ``invoke_<call>`` method: ``(client_id, request, *, timeout)``."""

    def __call__(
        self, target: str, request: RequestT_contra, *, timeout: float | None = None
    ) -> Awaitable[ResponseT_co]: ...


def with_current_stream(mapping: dict[str, Handler]) -> dict[str, Handler]:
    """A service mapping whose handlers publish their stream in :data:`current_stream`.

    betterproto2's service methods see only the request; the gateway needs the
    stream's deadline.
    """

    def bind(func: Callable[[Stream[Any, Any]], Awaitable[None]]) -> Any:
        async def handler(stream: Stream[Any, Any]) -> None:
            token = current_stream.set(stream)
            try:
                await func(stream)
            finally:
                current_stream.reset(token)

        return handler

    return {
        path: Handler(bind(h.func), h.cardinality, h.request_type, h.reply_type)
        for path, h in mapping.items()
    }


class MeshGateway:
    """The app-independent half of a gateway, serving through one MeshSrpcServer."""

    def __init__(self, server: MeshSrpcServer[Any, Any, Any]) -> None:
        self.server = server
        self.presence = PresenceFeed.of(server)

    async def call(
        self,
        invoke: Invoke[RequestT, ResponseT],
        client_id: str,
        request: RequestT | None,
        timeout: datetime.timedelta | None,
    ) -> ResponseT:
        """Call a client by id; every failure becomes the GRPCError of its status."""
        if not client_id:
            raise GRPCError(Status.INVALID_ARGUMENT, "client_id is empty")
        if request is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "request is missing")
        seconds = self._timeout(timeout)
        try:
            # The mesh's own timeout restarts on each heartbeat of the client's node:
            # the whole call is bounded here.
            async with asyncio.timeout(seconds):
                return await invoke(client_id, request, timeout=seconds)
        except GRPCError:
            raise
        except Exception as exc:
            raise grpc_error(exc) from exc

    async def broadcast(
        self, send: Callable[[Any], Awaitable[None]], data: betterproto2.Message | None
    ) -> None:
        """Send a broadcast (its payload as the app's TypedDict expects it) to every node."""
        if data is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "data is missing")
        try:
            await send(broadcast_payload(data))
        except Exception as exc:
            raise grpc_error(exc) from exc

    async def list_clients(
        self, node_id: int | None, metadata: Mapping[str, str]
    ) -> AsyncIterator[RegisteredClient[Any]]:
        """The connected clients, optionally one node's, whose metadata matches."""
        registry = self.server.client_registry
        try:
            if node_id is None:
                clients = await registry.list_clients()
            else:
                clients = await registry.list_clients_for_node(node_id)
        except Exception as exc:
            raise grpc_error(exc) from exc
        for client in clients:
            if _matches(client.metadata, metadata):
                yield client

    async def watch(self, client_id: str) -> AsyncIterator[PresenceChange | None]:
        """None once the watch is live, then every change (of one client, if given)."""
        async with self.presence.watch(client_id) as changes:
            yield None
            try:
                async for change in changes:
                    yield change
            except PresenceOverflowError as exc:
                raise GRPCError(Status.RESOURCE_EXHAUSTED, str(exc)) from exc

    def _timeout(self, timeout: datetime.timedelta | None) -> float | None:
        seconds: float | None = None
        if timeout is not None:
            seconds = timeout.total_seconds()
            if not (math.isfinite(seconds) and seconds > 0):
                raise GRPCError(Status.INVALID_ARGUMENT, "timeout must be positive")
        stream = current_stream.get()
        deadline = stream.deadline if stream is not None else None
        if deadline is not None:
            # The caller stops waiting at its deadline: so does the mesh.
            remaining = deadline.time_remaining()
            if remaining <= 0:
                raise GRPCError(Status.DEADLINE_EXCEEDED, "the deadline has passed")
            seconds = remaining if seconds is None else min(seconds, remaining)
        return seconds


def client_metadata(cls: type[MessageT], value: Any) -> MessageT | None:
    """A client's registry metadata (JSON) as the gateway's metadata message, if it fits."""
    if value is None:
        return None
    try:
        return message_from_object(cls, value)
    except Exception:
        return None


def connected_at(client: RegisteredClient[Any]) -> datetime.datetime:
    """When the client connected (the registry keeps epoch milliseconds)."""
    return datetime.datetime.fromtimestamp(client.connected_at / 1000, tz=datetime.UTC)


def broadcast_payload(message: betterproto2.Message) -> Any:
    """A broadcast payload as the app's TypedDicts type it: proto JSON names, every
    field present but unset optional ones, enums by name, 64-bit integers as numbers."""
    proto_json = message.to_dict(include_default_values=True)
    return _numbers_from(proto_json, message_to_object(message))


def _numbers_from(proto_json: Any, numbers: Any) -> Any:
    # Proto JSON writes 64-bit integers as strings; the ts-proto shape has them as numbers.
    if isinstance(proto_json, dict) and isinstance(numbers, dict):
        # An unset `optional` field is absent (NotRequired), not null.
        return {
            k: _numbers_from(v, numbers.get(k))
            for k, v in proto_json.items()
            if v is not None or k in numbers
        }
    if (
        isinstance(proto_json, list)
        and isinstance(numbers, list)
        and len(numbers) == len(proto_json)
    ):
        return [_numbers_from(a, b) for a, b in zip(proto_json, numbers, strict=True)]
    if (
        isinstance(proto_json, str)
        and isinstance(numbers, int)
        and not isinstance(numbers, bool)
        and proto_json == str(numbers)
    ):
        return numbers
    return proto_json


def _matches(metadata: Any, wanted: Mapping[str, str]) -> bool:
    if not wanted:
        return True
    if not isinstance(metadata, Mapping):
        return False
    for key, text in wanted.items():
        if key not in metadata:
            return False
        value = metadata[key]
        if (value if isinstance(value, str) else json.dumps(value)) != text:
            return False
    return True
