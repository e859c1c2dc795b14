"""meshsrpc: track WebSocket clients across many backend nodes and call any client from any node."""

from __future__ import annotations

from .errors import (
    ClientConflictError,
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    MeshConnectionError,
    MeshConnectionLostError,
    MeshError,
    MeshHandlerError,
    MeshNoHandlerError,
    MeshNotRunningError,
    MeshRequestTimeoutError,
    MeshStoppedError,
    RedisConfigurationError,
    SrpcConflictError,
    SrpcError,
    SrpcStreamClosedError,
)
from .settings import RedisSettings

# --- mesh layer (issue 2) ---
# isort: split
from .leader import LeaderOptions, LeaderService
from .mesh import MeshNode, MeshService

# --- registry and client service (issue 3) ---
# isort: split
from .client_service import MeshClientService
from .direct import DirectSettings
from .registry import (
    MeshClientMemoryRegistry,
    MeshClientRedisClusterRegistry,
    MeshClientRedisRegistry,
    MeshClientRegistry,
    MeshClientRegistryBackend,
    RegisteredClient,
)

# --- srpc (issue 4) ---
from .srpc import CloseCause, SrpcClient, SrpcServer, SrpcStream

# --- mesh + srpc (issue 5) ---
# isort: split
from .mesh_server import MeshSrpcServer

__version__ = "0.1.0"

__all__ = [
    "ClientConflictError",
    "ClientDisconnectedError",
    "ClientInvocationError",
    "ClientNotFoundError",
    "CloseCause",
    "DirectSettings",
    "LeaderOptions",
    "LeaderService",
    "MeshClientMemoryRegistry",
    "MeshClientRedisClusterRegistry",
    "MeshClientRedisRegistry",
    "MeshClientRegistry",
    "MeshClientRegistryBackend",
    "MeshClientService",
    "MeshConnectionError",
    "MeshConnectionLostError",
    "MeshError",
    "MeshHandlerError",
    "MeshNoHandlerError",
    "MeshNode",
    "MeshNotRunningError",
    "MeshRequestTimeoutError",
    "MeshService",
    "MeshSrpcServer",
    "MeshStoppedError",
    "RedisConfigurationError",
    "RedisSettings",
    "RegisteredClient",
    "SrpcClient",
    "SrpcConflictError",
    "SrpcError",
    "SrpcServer",
    "SrpcStream",
    "SrpcStreamClosedError",
    "__version__",
]
