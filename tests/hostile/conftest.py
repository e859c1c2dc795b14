"""Fixtures of the hostile-peer tests: the SRPC suite's servers and clients."""

from __future__ import annotations

from tests.srpc.conftest import make_client, make_server

__all__ = ["make_client", "make_server"]
