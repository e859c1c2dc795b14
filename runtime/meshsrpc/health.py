"""Health of a node, and a ready-made ASGI app for liveness and readiness probes.

:meth:`MeshSrpcServer.health` fills :class:`MeshHealth`; :class:`HealthApp` serves it
(``GET .../livez`` and ``GET .../readyz``) for Kubernetes probes or a load balancer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["HealthApp", "MeshHealth"]


@dataclass(frozen=True)
class MeshHealth:
    """One node's state as seen from inside it.

    ``heartbeat_age`` is seconds since Redis last took the node's heartbeat (None
    when not joined); ``node_ttl`` the age at which other nodes declare it dead.
    """

    mesh_joined: bool
    redis_reachable: bool
    heartbeat_age: float | None
    node_ttl: float
    leader: bool
    node_id: int
    open_streams: int
    error: str | None = None

    @property
    def ready(self) -> bool:
        """True when the node can take clients: joined, Redis answers, heartbeat fresh."""
        return (
            self.mesh_joined
            and self.redis_reachable
            and self.heartbeat_age is not None
            and self.heartbeat_age < self.node_ttl
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, ``ready`` included."""
        return {**asdict(self), "ready": self.ready}


HealthCheck = Callable[[], Awaitable[MeshHealth]]
_Scope = dict[str, Any]
_Receive = Callable[[], Awaitable[dict[str, Any]]]
_Send = Callable[[dict[str, Any]], Awaitable[None]]


class HealthApp:
    """ASGI app: ``…/livez`` answers 200 while the event loop runs; ``…/readyz`` answers
    200 when ``check()`` says ready, else 503; both with the health as JSON.

    Liveness must not depend on Redis: a Redis outage should take nodes out of the
    load balancer (readiness), not make Kubernetes restart every one of them.
    """

    def __init__(self, check: HealthCheck) -> None:
        self._check = check

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one HTTP request."""
        if scope.get("type") != "http":
            return
        path = str(scope.get("path", "")).rstrip("/")
        if path.endswith("/livez") or path == "livez":
            await _respond(send, 200, {"status": "live"})
        elif path.endswith("/readyz") or path == "readyz":
            health = await self._check()
            body = {"status": "ready" if health.ready else "not ready", **health.to_dict()}
            await _respond(send, 200 if health.ready else 503, body)
        else:
            await _respond(send, 404, {"error": "use /livez or /readyz"})


async def _respond(send: _Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
