"""meshsrpc: track WebSocket clients across many backend nodes and call any client from any node."""

from __future__ import annotations

from .errors import (
    ClientConflictError,
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    MeshError,
    MeshHandlerError,
    MeshNoHandlerError,
    MeshNotRunningError,
    MeshRequestTimeoutError,
    MeshStoppedError,
    RedisConfigurationError,
    SrpcConflictError,
    SrpcError,
)
from .settings import RedisSettings

# --- mesh layer (issue 2) ---
# --- registry and client service (issue 3) ---
# --- srpc (issue 4) ---

__version__ = "0.1.0"

__all__ = [
    "ClientConflictError",
    "ClientDisconnectedError",
    "ClientInvocationError",
    "ClientNotFoundError",
    "MeshError",
    "MeshHandlerError",
    "MeshNoHandlerError",
    "MeshNotRunningError",
    "MeshRequestTimeoutError",
    "MeshStoppedError",
    "RedisConfigurationError",
    "RedisSettings",
    "SrpcConflictError",
    "SrpcError",
    "__version__",
]
