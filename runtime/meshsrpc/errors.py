"""Every exception meshsrpc raises; all derive from :class:`MeshError`."""

from __future__ import annotations

__all__ = [
    "ClientConflictError",
    "ClientDisconnectedError",
    "ClientInvocationError",
    "ClientNotFoundError",
    "FrameError",
    "IllegalTransitionError",
    "InvalidMessage",
    "MeshConnectionError",
    "MeshConnectionLostError",
    "MeshError",
    "MeshHandlerError",
    "MeshNoHandlerError",
    "MeshNotRunningError",
    "MeshRequestTimeoutError",
    "MeshStoppedError",
    "RedisConfigurationError",
    "SrpcConflictError",
    "SrpcError",
    "SrpcStreamClosedError",
]


class MeshError(Exception):
    """Base class of every meshsrpc error."""


class RedisConfigurationError(MeshError):
    """No Redis connection is configured, or the configuration is inconsistent."""


class MeshConnectionError(MeshError, ConnectionError):
    """Redis could not be reached when a service started; names the (redacted) URL.

    Also a built-in :class:`ConnectionError`, so ``except ConnectionError`` catches it.
    """


class ClientNotFoundError(MeshError):
    """The client id is not in the registry (or the service is not running).

    ``message`` replaces the default text, e.g. to say that the mesh is not running.
    """

    def __init__(self, client_id: str, message: str | None = None) -> None:
        super().__init__(message or f"client {client_id!r} is not connected to any node")
        self.client_id = client_id


class ClientDisconnectedError(MeshError):
    """The registry names a node, but that node has no live stream for the client."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"client {client_id!r} has no live stream on its node")
        self.client_id = client_id


class ClientInvocationError(MeshError):
    """Delivering a call to a client on another node failed; wraps the remote error text.

    ``error_name`` is the error's name as that node reported it (``errorName``, e.g.
    ``"SrpcError"`` or ``"TimeoutError"``), or None.
    """

    def __init__(self, message: str, error_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_name = error_name


class ClientConflictError(MeshError):
    """Registering with ``allow_supersede=False`` while another node owns the client."""

    def __init__(self, client_id: str, owner_node_id: int) -> None:
        super().__init__(f"client {client_id!r} is already connected to node {owner_node_id}")
        self.client_id = client_id
        self.owner_node_id = owner_node_id


class MeshRequestTimeoutError(MeshError):
    """The remote node did not answer a mesh request in time."""

    def __init__(self, instance_id: int, type: str) -> None:
        super().__init__(f"mesh request {type!r} to node {instance_id} timed out")
        self.instance_id = instance_id
        self.type = type


class MeshConnectionLostError(MeshError):
    """The direct connection a request was written to dropped before the reply came.

    The request may have been delivered and handled: it is never sent again.
    """

    def __init__(self, instance_id: int, type: str) -> None:
        super().__init__(
            f"mesh request {type!r} to node {instance_id}: the direct connection dropped "
            "after the request was sent (it may have been handled; not retried)"
        )
        self.instance_id = instance_id
        self.type = type


class MeshHandlerError(MeshError):
    """The remote mesh handler raised; carries its error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MeshNoHandlerError(MeshError):
    """No mesh handler is registered for the request type, locally or remotely."""

    def __init__(self, type: str) -> None:
        super().__init__(f"no mesh handler for {type!r}")
        self.type = type


class MeshNotRunningError(MeshError):
    """The service is not running (not started, or stopped)."""


class MeshStoppedError(MeshError):
    """The service stopped while a call was in flight."""


class SrpcError(MeshError):
    """Raised by SRPC handlers; user errors reach the caller verbatim.

    Also raised on the calling side when the peer answered with an error; then
    ``is_user_error`` tells whether the peer marked it as a user error.
    """

    def __init__(self, message: str, is_user_error: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.is_user_error = is_user_error


class SrpcStreamClosedError(SrpcError):
    """A call got no reply because its connection closed; ``cause`` is why (a CloseCause).

    With cause ``"restart"`` (a draining server, close code 1012) the call was not
    run: a draining server runs no request it received after it started draining.
    """

    def __init__(self, cause: str | None) -> None:
        super().__init__(f"stream closed ({cause})")
        self.cause = cause


class SrpcConflictError(SrpcError):
    """``SrpcClient.connect`` was refused: the client id is already connected (protocol v2)."""

    def __init__(
        self,
        message: str = (
            "client id already connected; connect(supersede=True) takes over the existing"
            " connection"
        ),
    ) -> None:
        super().__init__(message)


class IllegalTransitionError(MeshError):
    """A client stream was moved to a phase its current phase cannot lead to (a bug)."""


class FrameError(MeshError, ValueError):
    """An SRPC frame could not be decoded; the stream is closed with 4000 (badArg)."""


class InvalidMessage(MeshError, ValueError):
    """A published payload that is not a mesh message (dropped and logged)."""
