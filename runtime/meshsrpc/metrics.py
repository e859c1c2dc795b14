"""Prometheus metrics for a node (the optional ``meshsrpc[metrics]`` extra).

``MeshSrpcServer(..., metrics=PrometheusMetrics())`` counts what the node does; expose
them with prometheus-client's own means (``start_http_server(9100)`` or
``make_asgi_app()``). Without ``metrics=`` nothing here runs, and this module imports
without prometheus-client installed: only creating :class:`PrometheusMetrics` needs it.

Why Prometheus and not OpenTelemetry: a scrape endpoint is what the load balancers,
Kubernetes and Grafana setups these nodes run in already read, it needs no SDK,
exporter or collector configured in the process, and its counters cost a lock and
an add. OpenTelemetry users can scrape these with the collector's Prometheus receiver.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .observer import CallOutcome, CallPlace, MeshMessageKind, MeshObserver

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["RPC_BUCKETS", "PrometheusMetrics"]

#: Latency buckets (seconds): a local call takes tens of µs, a forwarded one a few ms,
#: a client that thinks for a while seconds.
RPC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


_BOUND_LABELS = (*(str(float(bound)) for bound in RPC_BUCKETS), "+Inf")


class _Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(RPC_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(RPC_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip(_BOUND_LABELS, self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class PrometheusMetrics(MeshObserver):
    """A node's metrics, all named ``meshsrpc_*``, in ``registry`` (default: the global one).

    Raises ImportError naming the extra when prometheus-client is not installed.
    One instance per node and registry: metric names must be unique in a registry.

    The hooks run on the event loop for every call, so they only add to plain
    numbers (no lock, no label lookup in prometheus-client: about 0.1-0.3 µs each);
    the numbers become Prometheus metrics when they are scraped.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            import prometheus_client
        except ImportError as exc:  # pragma: no cover - exercised in a child process
            raise ImportError(
                "PrometheusMetrics needs prometheus-client: pip install 'meshsrpc[metrics]'"
            ) from exc
        self._count_clients: Callable[[], int] | None = None
        self.connects = 0
        self.disconnects = 0
        self.moves = 0
        self.conflicts = 0
        self.orphans = 0
        self.redis_reconnects = 0
        self.is_leader = 0
        self.rpcs_served: dict[tuple[str, str], _Histogram] = {}
        self.client_calls: dict[tuple[str, str, str], _Histogram] = {}
        self.mesh_messages: dict[tuple[str, str], int] = {}
        self.registry_errors: dict[str, int] = {}
        self.leader_changes: dict[str, int] = {}
        target: Any = registry if registry is not None else prometheus_client.REGISTRY
        target.register(_Collector(self))

    def set_connected_clients(self, count: Callable[[], int]) -> None:
        """The connected-clients gauge reads ``count()`` at each scrape."""
        self._count_clients = count

    def client_connected(self) -> None:
        """Count a connect."""
        self.connects += 1

    def client_disconnected(self) -> None:
        """Count a disconnect."""
        self.disconnects += 1

    def client_moved(self) -> None:
        """Count a move here."""
        self.moves += 1

    def client_conflict(self) -> None:
        """Count a refused connection."""
        self.conflicts += 1

    def orphans_reported(self, node_id: int, count: int) -> None:
        """Count a dead node's orphans."""
        self.orphans += count

    def rpc_served(self, call: str, outcome: CallOutcome, seconds: float) -> None:
        """Observe a client→server request."""
        key = (call, outcome)
        histogram = self.rpcs_served.get(key)
        if histogram is None:
            histogram = self.rpcs_served[key] = _Histogram()
        histogram.observe(seconds)

    def client_called(
        self, call: str, place: CallPlace, outcome: CallOutcome, seconds: float
    ) -> None:
        """Observe a server→client call."""
        key = (call, place, outcome)
        histogram = self.client_calls.get(key)
        if histogram is None:
            histogram = self.client_calls[key] = _Histogram()
        histogram.observe(seconds)

    def mesh_message_in(self, kind: MeshMessageKind) -> None:
        """Count an incoming mesh message."""
        key = ("in", kind)
        self.mesh_messages[key] = self.mesh_messages.get(key, 0) + 1

    def mesh_message_out(self, kind: MeshMessageKind) -> None:
        """Count an outgoing mesh message."""
        key = ("out", kind)
        self.mesh_messages[key] = self.mesh_messages.get(key, 0) + 1

    def registry_error(self, operation: str) -> None:
        """Count a failed registry command."""
        self.registry_errors[operation] = self.registry_errors.get(operation, 0) + 1

    def redis_reconnected(self) -> None:
        """Count a restored subscription."""
        self.redis_reconnects += 1

    def leader_changed(self, is_leader: bool) -> None:
        """Count a leadership change and set the leader gauge."""
        became = "true" if is_leader else "false"
        self.leader_changes[became] = self.leader_changes.get(became, 0) + 1
        self.is_leader = 1 if is_leader else 0


class _Collector:
    """Turns a PrometheusMetrics' numbers into metric families at scrape time."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        # The families themselves, so that registering a second instance in one
        # registry fails on the duplicate names instead of exporting them twice.
        return list(self.collect())

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self._metrics
        count = m._count_clients
        yield GaugeMetricFamily(
            "meshsrpc_connected_clients",
            "Clients connected to this node",
            value=count() if count is not None else 0,
        )
        yield GaugeMetricFamily(
            "meshsrpc_leader", "1 while this node is the mesh's cleanup leader", value=m.is_leader
        )
        for name, doc, value in (
            ("client_connects", "Clients that became visible here (moves included)", m.connects),
            ("client_disconnects", "Clients that left this node", m.disconnects),
            ("client_moves", "Clients taken over here from another node", m.moves),
            ("client_conflicts", "Connections refused: client on another node", m.conflicts),
            ("orphaned_clients", "Clients of dead nodes reported by this leader", m.orphans),
            ("redis_reconnects", "Redis subscriptions restored after a loss", m.redis_reconnects),
        ):
            yield CounterMetricFamily(f"meshsrpc_{name}", doc, value=value)
        labelled: list[tuple[str, str, list[str], dict[tuple[str, ...], int]]] = [
            ("mesh_messages", "Mesh messages by direction and kind", ["direction", "kind"],
             {(d, k): v for (d, k), v in m.mesh_messages.items()}),
            ("registry_errors", "Failed client registry commands", ["operation"],
             {(k,): v for k, v in m.registry_errors.items()}),
            ("leader_changes", "Times this node became or stopped being the leader", ["became"],
             {(k,): v for k, v in m.leader_changes.items()}),
        ]  # fmt: skip
        for name, doc, labels, values in labelled:
            family = CounterMetricFamily(f"meshsrpc_{name}", doc, labels=labels)
            for key, value in values.items():
                family.add_metric(list(key), value)
            yield family
        timed: list[tuple[str, str, list[str], dict[Any, _Histogram]]] = [
            ("rpc_served_seconds", "Client-to-server requests answered here",
             ["call", "outcome"], dict(m.rpcs_served)),
            ("client_call_seconds", "Server-to-client calls made here",
             ["call", "place", "outcome"], dict(m.client_calls)),
        ]  # fmt: skip
        for name, doc, labels, histograms in timed:
            histogram_family = HistogramMetricFamily(f"meshsrpc_{name}", doc, labels=labels)
            for key, histogram in histograms.items():
                histogram_family.add_metric(list(key), histogram.cumulative(), histogram.total)
            yield histogram_family
