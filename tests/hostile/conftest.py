"""Fixtures of the hostile-peer tests: the SRPC suite's servers and clients."""

from __future__ import annotations

import sys
from pathlib import Path

# The generated test classes live in tests/generated (package ``tests.generated``).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.srpc.conftest import make_client, make_server  # noqa: E402

__all__ = ["make_client", "make_server"]
