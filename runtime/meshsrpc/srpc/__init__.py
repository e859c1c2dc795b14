"""SRPC: typed request/response over one binary WebSocket per client (WIRE.md §4)."""

from __future__ import annotations

from .bytestream import ByteStreamReader, ByteStreamWriter
from .client import SrpcClient
from .clientmeta import ClientMetaError, ClientMetaSchema
from .options import SrpcClientOptions, SrpcServerOptions
from .protocol import CloseCause
from .server import SrpcServer
from .stream import SrpcStream, StreamMeta

__all__ = [
    "ByteStreamReader",
    "ByteStreamWriter",
    "ClientMetaError",
    "ClientMetaSchema",
    "CloseCause",
    "SrpcClient",
    "SrpcClientOptions",
    "SrpcServer",
    "SrpcServerOptions",
    "SrpcStream",
    "StreamMeta",
]
