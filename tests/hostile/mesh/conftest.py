"""Fixtures of the hostile-peer mesh tests: the mesh server suite's nodes and clients."""

from __future__ import annotations

from tests.mesh_server.conftest import make_client, make_node

__all__ = ["make_client", "make_node"]
