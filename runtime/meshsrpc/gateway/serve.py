"""Serving a gateway over gRPC (grpclib): where it listens, TLS, and who may call it."""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server

__all__ = ["Authenticator", "GatewayRequest", "GatewayServer", "bearer_token"]

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class GatewayRequest:
    """What an :data:`Authenticator` sees of an incoming rpc."""

    method: str  # "/pkg.gateway.AppGateway/DNotify"
    metadata: Mapping[str, str]  # text metadata, keys lower-case ("authorization", ...)


Authenticator: TypeAlias = Callable[[GatewayRequest], "bool | Awaitable[bool]"]
"""authenticate(request) -> True to serve the rpc; False answers UNAUTHENTICATED."""


def bearer_token(*tokens: str) -> Authenticator:
    """An authenticator accepting ``authorization: Bearer <token>`` for any of ``tokens``."""
    if not tokens or not all(tokens):
        raise ValueError("bearer_token needs at least one non-empty token")
    expected = [f"Bearer {token}".encode() for token in tokens]

    def authenticate(request: GatewayRequest) -> bool:
        given = request.metadata.get("authorization", "").encode()
        # Compared with every token, in constant time: no early exit tells which.
        return any([hmac.compare_digest(given, token) for token in expected])

    return authenticate


def is_loopback(host: str | None) -> bool:
    """Whether binding ``host`` keeps the gateway on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class _RequestCodec(ProtoCodec):
    """Protobuf, with a request that does not parse answered INVALID_ARGUMENT.

    grpclib would answer UNKNOWN and log the parser's traceback as an app error.
    """

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return super().decode(data, message_type)
        except Exception as exc:
            name = getattr(message_type, "__name__", "message")
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {name}: {exc}") from exc


class GatewayServer:
    """grpclib serving gateway services, behind an optional authenticator."""

    def __init__(
        self, services: Collection[Any], *, authenticate: Authenticator | None = None
    ) -> None:
        self._server = Server(list(services), codec=_RequestCodec())
        self._authenticate = authenticate
        self._port: int | None = None
        if authenticate is not None:
            listen(self._server, RecvRequest, self._check)

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        if self._port is None:
            raise RuntimeError("the gateway is not started")
        return self._port

    async def start(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        ssl: ssl_module.SSLContext | None = None,
        allow_unauthenticated: bool = False,
    ) -> None:
        """Listen on host:port (loopback by default).

        Off loopback an authenticator is required (every rpc can call any client),
        unless ``allow_unauthenticated`` says the network itself is trusted.
        """
        if not is_loopback(host) and self._authenticate is None and not allow_unauthenticated:
            raise ValueError(
                f"refusing to serve the gateway on {host!r} without an authenticator "
                "(pass authenticate=..., or allow_unauthenticated=True)"
            )
        sock = _bound_socket(host, port)
        try:
            await self._server.start(sock=sock, ssl=ssl)
        except BaseException:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])

    async def close(self) -> None:
        """Stop listening, cancel running rpcs (watches end) and wait for them."""
        if self._port is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._port = None

    async def __aenter__(self) -> GatewayServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _check(self, event: RecvRequest) -> None:
        assert self._authenticate is not None
        metadata = {k: v for k, v in event.metadata.items() if isinstance(v, str)}
        verdict = self._authenticate(GatewayRequest(event.method_name, metadata))
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not verdict:
            raise GRPCError(Status.UNAUTHENTICATED, "not authenticated")


def _bound_socket(host: str, port: int) -> socket.socket:
    # Bound here, not by grpclib: the caller learns the real port of port 0.
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
