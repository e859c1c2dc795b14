"""Client metadata as JSON text: the one encoding every registry backend stores."""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["decode_metadata", "encode_metadata", "now_ms"]


def encode_metadata(metadata: object) -> str | None:
    """Compact JSON text for ``metadata``; None for None (no metadata).

    Raises TypeError naming the problem when the value is not JSON-serialisable
    (including NaN/Infinity, which JSON cannot carry and TypeScript peers could
    not parse), so callers fail before anything is written.
    """
    if metadata is None:
        return None
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"client metadata is not JSON-serialisable: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot travel as UTF-8; \\u escapes carry them losslessly.
        text = json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    return text


def decode_metadata(text: str | bytes | None) -> Any:
    """The metadata value for JSON text from :func:`encode_metadata` (None stays None)."""
    return None if text is None else json.loads(text)


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of ``connected_at``."""
    return time.time_ns() // 1_000_000
