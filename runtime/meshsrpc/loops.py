"""The event loop to run on: asyncio's own, or uvloop (``meshsrpc[speed]``) when asked for.

One switch: the ``uvloop`` argument, else ``MESHSRPC_UVLOOP=1`` in the environment.
Asking for uvloop where it is not installed logs a warning and runs on asyncio.

A second switch for tail latency: ``gc_freeze`` (else ``MESHSRPC_GC_FREEZE=1``) freezes
the objects alive at start-up (modules, classes, message schemas) out of the cyclic
garbage collector's reach. A full collection otherwise walks all of them: with a busy
node it stops the loop for 15-20 ms about once a second (the p99 of a cross-node call
at 100 in flight, in ``bench/``); frozen, it walks only what was made since.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = [
    "GC_FREEZE_ENV",
    "UVLOOP_ENV",
    "freeze_gc",
    "gc_freeze_wanted",
    "loop_factory",
    "run",
    "uvloop_available",
    "uvloop_wanted",
]

logger = logging.getLogger(__name__)

UVLOOP_ENV: Final = "MESHSRPC_UVLOOP"
"""Environment variable that turns uvloop on (``1``/``true``/``yes``/``on``)."""

GC_FREEZE_ENV: Final = "MESHSRPC_GC_FREEZE"
"""Environment variable that freezes the start-up objects for the collector (``1``...)."""

_TRUE = {"1", "true", "yes", "on"}

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when the ``uvloop`` package can be imported."""
    return importlib.util.find_spec("uvloop") is not None


def uvloop_wanted(uvloop: bool | None = None) -> bool:
    """Whether uvloop is asked for: ``uvloop`` if given, else ``$MESHSRPC_UVLOOP``."""
    if uvloop is not None:
        return uvloop
    return os.environ.get(UVLOOP_ENV, "").strip().lower() in _TRUE


def gc_freeze_wanted(gc_freeze: bool | None = None) -> bool:
    """Whether freezing is asked for: ``gc_freeze`` if given, else ``$MESHSRPC_GC_FREEZE``."""
    if gc_freeze is not None:
        return gc_freeze
    return os.environ.get(GC_FREEZE_ENV, "").strip().lower() in _TRUE


def freeze_gc() -> None:
    """Collect once, then freeze every object alive (``gc.freeze()``).

    Call it when start-up is done (an app not started by :func:`run`: after its
    imports and server set-up). Frozen objects are never collected: what start-up
    leaves behind stays, so call it once, not per request or reconnect.
    """
    gc.collect()
    gc.freeze()


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
    main: Coroutine[Any, Any, T],
    *,
    uvloop: bool | None = None,
    debug: bool | None = None,
    gc_freeze: bool | None = None,
) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks; with ``gc_freeze``
    (or ``$MESHSRPC_GC_FREEZE``), :func:`freeze_gc` first."""
    if gc_freeze_wanted(gc_freeze):
        freeze_gc()
    with asyncio.Runner(debug=debug, loop_factory=loop_factory(uvloop)) as runner:
        return runner.run(main)
