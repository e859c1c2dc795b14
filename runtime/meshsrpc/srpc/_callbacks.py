"""Calling user callbacks that may be plain functions or coroutines."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = ["call_maybe_async"]


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` and await the result if it is awaitable."""
    result = fn(*args)
    # A coroutine (an async def) first: inspect.isawaitable costs more.
    if type(result) is types.CoroutineType or inspect.isawaitable(result):
        return await result
    return result
