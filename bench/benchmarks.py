"""The benchmarks ``python -m bench`` runs, in order: (name, module with TITLE and run(profile))."""

from __future__ import annotations

from types import ModuleType

from . import (
    codec,
    connections,
    cross_node,
    failover,
    framing,
    gateway_cross,
    local_invoke,
    metrics_overhead,
    node_echo,
    registry_bench,
    scale,
    srpc_echo,
)

BENCHMARKS: list[tuple[str, ModuleType]] = [
    (srpc_echo.NAME, srpc_echo),
    (node_echo.NAME, node_echo),
    (cross_node.NAME, cross_node),
    (gateway_cross.NAME, gateway_cross),
    (framing.NAME, framing),
    (local_invoke.NAME, local_invoke),
    (registry_bench.NAME, registry_bench),
    (scale.NAME, scale),
    (connections.NAME, connections),
    (codec.NAME, codec),
    (metrics_overhead.NAME, metrics_overhead),
    (failover.NAME, failover),
]
