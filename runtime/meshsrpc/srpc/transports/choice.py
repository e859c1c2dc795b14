"""Which WebSocket implementation carries SRPC: ``picows`` when importable, else ``websockets``."""

from __future__ import annotations

import os
from typing import Final, Literal, TypeAlias

__all__ = ["TRANSPORT_ENV", "TransportName", "choose_transport", "picows_available"]

TransportName: TypeAlias = Literal["websockets", "picows"]

TRANSPORT_ENV: Final = "MESHSRPC_TRANSPORT"
"""Environment variable naming the transport when the code does not: websockets, picows, auto."""

_NAMES: Final[tuple[TransportName, ...]] = ("websockets", "picows")


def picows_available() -> bool:
    """True when the ``picows`` package can be imported."""
    # Imported, not only looked up: a wheel built for another platform or Python is
    # found but fails to load, and then websockets carries SRPC.
    try:
        import picows  # noqa: F401
    except ImportError:
        return False
    return True


def choose_transport(name: str | None = None, *, compression: str | None = None) -> TransportName:
    """The transport to use: ``name``, else ``$MESHSRPC_TRANSPORT``, else ``auto``.

    ``auto`` is ``picows`` (1.5 to 2 times faster here) when it can be imported and no
    compression is wanted (picows has none), else ``websockets``. Asking for
    ``picows`` where it is missing, or with compression, is an error.
    """
    value = (name or os.environ.get(TRANSPORT_ENV) or "auto").strip().lower()
    if value == "auto":
        return "picows" if compression is None and picows_available() else "websockets"
    for known in _NAMES:
        if value == known:
            if known == "picows" and not picows_available():
                raise RuntimeError(
                    "the picows transport needs the picows package (pip install picows)"
                )
            if known == "picows" and compression is not None:
                raise ValueError(f"the picows transport has no {compression!r} compression")
            return known
    raise ValueError(f"unknown SRPC transport {value!r} (known: auto, {', '.join(_NAMES)})")
