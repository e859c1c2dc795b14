"""The gRPC gateway runtime (``pip install meshsrpc[gateway]``): serves ``meshgen --gateway`` code.

Any service, in any language, calls a WebSocket client of the mesh by id through the
gRPC service meshgen generates from the app's proto; this package holds what every
such gateway shares: relaying calls, status codes, presence, auth and serving.
"""

from __future__ import annotations

from .core import (
    Invoke,
    MeshGateway,
    broadcast_payload,
    client_metadata,
    connected_at,
    current_stream,
    with_current_stream,
)
from .presence import (
    PRESENCE_BROADCAST,
    PresenceChange,
    PresenceFeed,
    PresenceOverflowError,
    PresenceWatch,
)
from .serve import Authenticator, GatewayRequest, GatewayServer, bearer_token
from .status import grpc_error

__all__ = [
    "PRESENCE_BROADCAST",
    "Authenticator",
    "GatewayRequest",
    "GatewayServer",
    "Invoke",
    "MeshGateway",
    "PresenceChange",
    "PresenceFeed",
    "PresenceOverflowError",
    "PresenceWatch",
    "bearer_token",
    "broadcast_payload",
    "client_metadata",
    "connected_at",
    "current_stream",
    "grpc_error",
    "with_current_stream",
]
