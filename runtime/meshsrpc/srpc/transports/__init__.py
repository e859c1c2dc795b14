"""Transports that carry SRPC: ``websockets`` (standalone server and client) and ASGI."""
