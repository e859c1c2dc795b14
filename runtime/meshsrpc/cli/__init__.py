"""The ``meshsrpc`` operator command (``python -m meshsrpc``); see :mod:`.main`."""

from __future__ import annotations

from .main import main, run

__all__ = ["main", "run"]
