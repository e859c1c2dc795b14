"""Transports that carry SRPC: ``websockets`` and ``picows`` (listener and client), and ASGI.

Each reaches the server only through the contract in :mod:`.base`.
"""
