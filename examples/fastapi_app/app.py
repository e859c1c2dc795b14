"""The presence server mounted in a FastAPI app, next to ordinary HTTP routes.

::

    MESH_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.fastapi_app.app:app --port 8000

Clients connect to ``ws://127.0.0.1:8000/srpc``; ``GET /clients`` lists everyone on
every node, ``POST /clients/{id}/notify`` calls a client wherever it is connected.
``GET /livez`` and ``GET /readyz`` are the liveness and readiness probes (readiness is
503 while Redis is unreachable or the node is not in the mesh); with
``MESHSRPC_METRICS=1`` (and ``meshsrpc[metrics]`` installed) ``GET /metrics`` serves
Prometheus metrics. Without ``MESH_REDIS_URL`` the app runs on the in-process engine
(one node).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from meshsrpc import ClientNotFoundError, RedisSettings
from meshsrpc.health import HealthApp
from pydantic import BaseModel
from starlette.routing import Mount, Route, WebSocketRoute

from ..presence.generated.presence import DNotifyRequest
from ..presence.server import PresenceServer

__all__ = ["app", "create_app"]


class Notification(BaseModel):
    """Body of ``POST /clients/{client_id}/notify``."""

    text: str


def create_app(
    redis: RedisSettings | str | None = None, *, metrics: bool | None = None, **server_options: Any
) -> FastAPI:
    """A FastAPI app with the SRPC endpoint at ``/srpc`` and a small HTTP API.

    Clients sign with ``SRPC_AUTH_SECRET`` (read by the server from the environment);
    ``server_options`` go to the server (e.g. ``allow_unsigned=True`` in development).
    ``metrics`` (default: ``MESHSRPC_METRICS=1``) serves Prometheus metrics at ``/metrics``.
    """
    if metrics is None:
        metrics = os.environ.get("MESHSRPC_METRICS") == "1"
    if metrics:
        from meshsrpc.metrics import PrometheusMetrics
        from prometheus_client import CollectorRegistry, make_asgi_app

        registry = CollectorRegistry()
        server_options["metrics"] = PrometheusMetrics(registry)
    server = PresenceServer(
        redis=redis or os.environ.get("MESH_REDIS_URL", "memory://fastapi"), **server_options
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The mesh lives as long as the HTTP app: join on startup, leave on shutdown.
        async with server:
            yield

    app = FastAPI(title="presence", lifespan=lifespan)
    app.state.srpc = server

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "node": server.mesh_instance_id}

    @app.get("/clients")
    async def clients() -> list[dict[str, Any]]:
        return [
            {"clientId": c.client_id, "nodeId": c.node_id, "metadata": c.metadata}
            for c in await server.client_registry.list_clients()
        ]

    @app.post("/clients/{client_id}/notify")
    async def notify(client_id: str, body: Notification) -> dict[str, Any]:
        try:
            reply = await server.invoke_d_notify(
                client_id, DNotifyRequest(text=body.text, sent_from_node=server.mesh_instance_id)
            )
        except ClientNotFoundError:
            raise HTTPException(404, f"{client_id} is not connected") from None
        return {"acknowledged": reply.acknowledged}

    # The SRPC app serves whatever path it is routed at. A WebSocketRoute hands the raw
    # ASGI scope to it (a Mount("/srpc") would only match paths below /srpc/).
    app.router.routes.append(WebSocketRoute("/srpc", server.asgi))
    # Probes for Kubernetes or a load balancer: liveness never asks Redis (an outage
    # must not restart every pod), readiness does.
    probes = HealthApp(server.health)
    app.router.routes.append(Route("/livez", probes))
    app.router.routes.append(Route("/readyz", probes))
    if metrics:
        app.router.routes.append(Mount("/metrics", make_asgi_app(registry)))
    return app


app = create_app()
