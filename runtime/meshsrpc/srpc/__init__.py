"""SRPC: typed request/response over one binary WebSocket per client (WIRE.md §4)."""

from __future__ import annotations

from .bytestream import ByteStreamReader, ByteStreamWriter
from .client import SrpcClient
from .protocol import CloseCause
from .server import SrpcServer
from .stream import SrpcStream, StreamMeta

__all__ = [
    "ByteStreamReader",
    "ByteStreamWriter",
    "CloseCause",
    "SrpcClient",
    "SrpcServer",
    "SrpcStream",
    "StreamMeta",
]
