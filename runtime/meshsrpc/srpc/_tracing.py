"""Optional OpenTelemetry propagation through the frame's ``trace`` field.

Active only when ``opentelemetry-api`` is importable; otherwise both helpers do nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import betterproto2

__all__ = ["current_trace", "remote_parent"]

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_trace = None  # type: ignore[assignment]
    _otel_context = None  # type: ignore[assignment]


def current_trace(trace_cls: type[betterproto2.Message] | None) -> betterproto2.Message | None:
    """A ``TraceContext`` for the current span, or None (no OpenTelemetry or no span)."""
    if _otel_trace is None or trace_cls is None:
        return None
    ctx = _otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    trace: Any = trace_cls()
    trace.trace_id = f"{ctx.trace_id:032x}"
    trace.span_id = f"{ctx.span_id:016x}"
    trace.trace_flags = int(ctx.trace_flags)
    return trace  # type: ignore[no-any-return]


@contextlib.contextmanager
def remote_parent(trace: betterproto2.Message | None) -> Iterator[None]:
    """Run the body with the caller's span (from the frame) as the current parent."""
    if _otel_trace is None or _otel_context is None or trace is None:
        yield
        return
    fields: Any = trace
    try:
        span_context = _otel_trace.SpanContext(
            trace_id=int(fields.trace_id, 16),
            span_id=int(fields.span_id, 16),
            is_remote=True,
            trace_flags=_otel_trace.TraceFlags(fields.trace_flags & 0xFF),
        )
    except (ValueError, AttributeError):
        yield
        return
    if not span_context.is_valid:
        yield
        return
    token = _otel_context.attach(
        _otel_trace.set_span_in_context(_otel_trace.NonRecordingSpan(span_context))
    )
    try:
        yield
    finally:
        _otel_context.detach(token)
