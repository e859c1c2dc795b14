"""Calling user callbacks that may be plain functions or coroutines."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_maybe_async"]


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and await the result if it is awaitable."""
    result = fn(*args)
    if inspect.isawaitable(result):
        return await result
    return result
