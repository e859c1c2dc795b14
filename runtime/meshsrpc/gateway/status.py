"""What a failed call to a client becomes on the gRPC side: a status code and a message."""

from __future__ import annotations

import asyncio
import logging

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from ..errors import (
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    MeshError,
    MeshNotRunningError,
    MeshRequestTimeoutError,
    MeshStoppedError,
    SrpcError,
)
from ..srpc.protocol import UNHANDLED_MESSAGE_TYPE

__all__ = ["grpc_error"]

logger = logging.getLogger("meshsrpc.gateway")


def grpc_error(exc: BaseException) -> GRPCError:
    """The gRPC status for an error raised while calling a client through the mesh."""
    if isinstance(exc, GRPCError):
        return exc
    if isinstance(exc, ClientNotFoundError):
        return GRPCError(Status.NOT_FOUND, str(exc))
    if isinstance(exc, ClientDisconnectedError | MeshNotRunningError | MeshStoppedError):
        return GRPCError(Status.UNAVAILABLE, str(exc))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | MeshRequestTimeoutError):
        return GRPCError(Status.DEADLINE_EXCEEDED, str(exc) or "the client did not answer in time")
    if isinstance(exc, ClientInvocationError):
        # The client's node relayed a failure: its name tells a timeout from an answer.
        if exc.error_name == "TimeoutError":
            return GRPCError(Status.DEADLINE_EXCEEDED, exc.message)
        return _answered(exc.message)
    if isinstance(exc, SrpcError):
        return _answered(exc.message)
    if isinstance(exc, MeshError):
        return GRPCError(Status.INTERNAL, str(exc))
    logger.error("gateway call failed", exc_info=exc)
    return GRPCError(Status.INTERNAL, f"{type(exc).__name__}: {exc}")


def _answered(message: str) -> GRPCError:
    # The client answered the call with an error. Across nodes the wire does not say
    # whether it was a user error, so both are ABORTED, with the client's text.
    if message.startswith(UNHANDLED_MESSAGE_TYPE):
        return GRPCError(Status.UNIMPLEMENTED, message)
    return GRPCError(Status.ABORTED, message)
