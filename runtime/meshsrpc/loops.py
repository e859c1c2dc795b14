"""The event loop to run on: asyncio's own, or uvloop (``meshsrpc[speed]``) when asked for.

One switch: the ``uvloop`` argument, else ``MESHSRPC_UVLOOP=1`` in the environment.
Asking for uvloop where it is not installed logs a warning and runs on asyncio.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["UVLOOP_ENV", "loop_factory", "run", "uvloop_available", "uvloop_wanted"]

logger = logging.getLogger(__name__)

UVLOOP_ENV: Final = "MESHSRPC_UVLOOP"
"""Environment variable that turns uvloop on (``1``/``true``/``yes``/``on``)."""

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when the ``uvloop`` package can be imported."""
    return importlib.util.find_spec("uvloop") is not None


def uvloop_wanted(uvloop: bool | None = None) -> bool:
    """Whether uvloop is asked for: ``uvloop`` if given, else ``$MESHSRPC_UVLOOP``."""
    if uvloop is not None:
        return uvloop
    return os.environ.get(UVLOOP_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def loop_factory(uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of new event loops: uvloop's when wanted and installed, else asyncio's."""
    if not uvloop_wanted(uvloop):
        return asyncio.new_event_loop
    if not uvloop_available():
        logger.warning("uvloop was asked for but is not installed (pip install meshsrpc[speed])")
        return asyncio.new_event_loop
    import uvloop as uvloop_module

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop_module.new_event_loop
    return factory


def run(
    main: Coroutine[Any, Any, T], *, uvloop: bool | None = None, debug: bool | None = None
) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory(uvloop)) as runner:
        return runner.run(main)
