"""Transports that carry SRPC: ``picows``, ``websockets`` (server and client) and ASGI."""
