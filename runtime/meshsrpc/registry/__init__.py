"""The mesh-wide client registry: which node holds which client, with its metadata."""

from __future__ import annotations

from .base import (
    MeshClientRegistryBackend,
    MeshClientReservationBackend,
    RegisteredClient,
)
from .memory import MeshClientMemoryRegistry
from .metadata import decode_metadata, encode_metadata, now_ms
from .redis import MeshClientRedisRegistry
from .redis_cluster import MeshClientRedisClusterRegistry
from .registry import MeshClientRegistry

__all__ = [
    "MeshClientMemoryRegistry",
    "MeshClientRedisClusterRegistry",
    "MeshClientRedisRegistry",
    "MeshClientRegistry",
    "MeshClientRegistryBackend",
    "MeshClientReservationBackend",
    "RegisteredClient",
    "decode_metadata",
    "encode_metadata",
    "now_ms",
]
