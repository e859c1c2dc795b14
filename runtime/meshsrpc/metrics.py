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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .observer import CallOutcome, CallPlace, MeshMessageKind, MeshObserver

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["RPC_BUCKETS", "PrometheusMetrics"]

#: Latency buckets (seconds): a local call takes tens of µs, a forwarded one a few ms,
#: a client that thinks for a while seconds.
RPC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class PrometheusMetrics(MeshObserver):
    """A node's metrics, all named ``meshsrpc_*``, in ``registry`` (default: the global one).

    Raises ImportError naming the extra when prometheus-client is not installed.
    One instance per node and registry: metric names must be unique in a registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "meshsrpc"):
        try:
            import prometheus_client as prom
        except ImportError as exc:  # pragma: no cover - exercised in a child process
            raise ImportError(
                "PrometheusMetrics needs prometheus-client: pip install 'meshsrpc[metrics]'"
            ) from exc
        reg: Any = registry if registry is not None else prom.REGISTRY
        ns = namespace
        self.connected_clients = prom.Gauge(
            "connected_clients", "Clients connected to this node", namespace=ns, registry=reg
        )
        self.connects = prom.Counter(
            "client_connects", "Clients that became visible on this node (moves included)",
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.disconnects = prom.Counter(
            "client_disconnects", "Clients that left this node", namespace=ns, registry=reg
        )
        self.moves = prom.Counter(
            "client_moves", "Clients taken over here from another node", namespace=ns,
            registry=reg,
        )  # fmt: skip
        self.conflicts = prom.Counter(
            "client_conflicts", "Connections refused: client connected on another node",
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.orphans = prom.Counter(
            "orphaned_clients", "Clients of dead nodes this node (as leader) reported",
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.rpcs_served = prom.Histogram(
            "rpc_served_seconds", "Client-to-server requests answered here, by call and outcome",
            ["call", "outcome"], namespace=ns, registry=reg, buckets=RPC_BUCKETS,
        )  # fmt: skip
        self.client_calls = prom.Histogram(
            "client_call_seconds", "Server-to-client calls made here, by call, place, outcome",
            ["call", "place", "outcome"], namespace=ns, registry=reg, buckets=RPC_BUCKETS,
        )  # fmt: skip
        self.mesh_messages = prom.Counter(
            "mesh_messages", "Mesh messages by direction and kind", ["direction", "kind"],
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.registry_errors = prom.Counter(
            "registry_errors", "Failed client registry commands", ["operation"], namespace=ns,
            registry=reg,
        )  # fmt: skip
        self.redis_reconnects = prom.Counter(
            "redis_reconnects", "Subscriptions to Redis restored after a loss", namespace=ns,
            registry=reg,
        )  # fmt: skip
        self.leader_changes = prom.Counter(
            "leader_changes", "Times this node became or stopped being the leader",
            ["became"], namespace=ns, registry=reg,
        )  # fmt: skip
        self.is_leader = prom.Gauge(
            "leader", "1 while this node is the mesh's cleanup leader", namespace=ns, registry=reg
        )
        # Labelled children resolved once: .labels() takes a lock and hashes every time.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def set_connected_clients(self, count: Callable[[], int]) -> None:
        """The connected-clients gauge reads ``count()`` at each scrape."""
        self.connected_clients.set_function(count)

    def client_connected(self) -> None:
        """Count a connect."""
        self.connects.inc()

    def client_disconnected(self) -> None:
        """Count a disconnect."""
        self.disconnects.inc()

    def client_moved(self) -> None:
        """Count a move here."""
        self.moves.inc()

    def client_conflict(self) -> None:
        """Count a refused connection."""
        self.conflicts.inc()

    def orphans_reported(self, node_id: int, count: int) -> None:
        """Count a dead node's orphans."""
        self.orphans.inc(count)

    def rpc_served(self, call: str, outcome: CallOutcome, seconds: float) -> None:
        """Observe a client→server request."""
        self._child(self.rpcs_served, call, outcome).observe(seconds)

    def client_called(
        self, call: str, place: CallPlace, outcome: CallOutcome, seconds: float
    ) -> None:
        """Observe a server→client call."""
        self._child(self.client_calls, call, place, outcome).observe(seconds)

    def mesh_message_in(self, kind: MeshMessageKind) -> None:
        """Count an incoming mesh message."""
        self._child(self.mesh_messages, "in", kind).inc()

    def mesh_message_out(self, kind: MeshMessageKind) -> None:
        """Count an outgoing mesh message."""
        self._child(self.mesh_messages, "out", kind).inc()

    def registry_error(self, operation: str) -> None:
        """Count a failed registry command."""
        self._child(self.registry_errors, operation).inc()

    def redis_reconnected(self) -> None:
        """Count a restored subscription."""
        self.redis_reconnects.inc()

    def leader_changed(self, is_leader: bool) -> None:
        """Count a leadership change and set the leader gauge."""
        self._child(self.leader_changes, "true" if is_leader else "false").inc()
        self.is_leader.set(1 if is_leader else 0)
