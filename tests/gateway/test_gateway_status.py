"""Which gRPC status each error of a call to a client becomes."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from meshsrpc import (
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    MeshHandlerError,
    MeshRequestTimeoutError,
    MeshStoppedError,
    SrpcError,
)
from meshsrpc.gateway import grpc_error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ClientNotFoundError("bob"), Status.NOT_FOUND),
        (ClientDisconnectedError("bob"), Status.UNAVAILABLE),
        (MeshStoppedError("stopping"), Status.UNAVAILABLE),
        (TimeoutError("dNotify got no reply within 1 s"), Status.DEADLINE_EXCEEDED),
        (MeshRequestTimeoutError(2, "forward"), Status.DEADLINE_EXCEEDED),
        (ClientInvocationError("late", "TimeoutError"), Status.DEADLINE_EXCEEDED),
        (ClientInvocationError("no", "SrpcError"), Status.ABORTED),
        (ClientInvocationError("thrown string"), Status.ABORTED),
        (SrpcError("no", is_user_error=True), Status.ABORTED),
        (SrpcError("crashed"), Status.ABORTED),
        (SrpcError("Unhandled message type: dNotify"), Status.UNIMPLEMENTED),
        (
            ClientInvocationError("Unhandled message type: dNotify", "SrpcError"),
            Status.UNIMPLEMENTED,
        ),
        (MeshHandlerError("no such handler"), Status.INTERNAL),
        (RuntimeError("bug"), Status.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value.name,
)
def test_error_becomes_its_status(error: BaseException, status: Status) -> None:
    assert grpc_error(error).status is status


def test_client_error_message_is_kept() -> None:
    assert grpc_error(SrpcError("cannot compute 7", is_user_error=True)).message == (
        "cannot compute 7"
    )
