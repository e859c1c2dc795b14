"""Transports that carry SRPC: ``picows`` and ``websockets`` (listener and client), and ASGI.

Each reaches the server only through the contract in :mod:`.base`.
"""
