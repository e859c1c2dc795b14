"""meshgen: typed server and client classes from an SRPC app's .proto."""

from __future__ import annotations

__version__ = "0.1.0"
