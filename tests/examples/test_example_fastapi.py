"""examples/fastapi_app: SRPC on /srpc and plain HTTP routes in one uvicorn server."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from meshsrpc import RedisSettings
from meshsrpc.redis_server import free_port

from examples.fastapi_app.app import create_app
from examples.presence.client import PresenceClient
from examples.presence.generated.presence import UWhoIsOnlineRequest


@pytest.fixture
async def base_url(redis_settings: RedisSettings) -> AsyncIterator[str]:
    app = create_app(redis_settings, allow_unsigned=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
            await asyncio.sleep(0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def _http(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    def call() -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    return await asyncio.to_thread(call)


async def test_fastapi_app_serves_http_and_srpc_side_by_side(base_url: str) -> None:
    health = await _http("GET", f"http://{base_url}/health")
    assert health["ok"] is True and health["node"] >= 1

    client = PresenceClient(f"ws://{base_url}/srpc", "alice", enable_reconnect=False)
    await client.connect()
    try:
        online = await client.invoke_u_who_is_online(UWhoIsOnlineRequest())
        assert [e.client_id for e in online.entries] == ["alice"]

        listed = await _http("GET", f"http://{base_url}/clients")
        assert [c["clientId"] for c in listed] == ["alice"]
        assert listed[0]["metadata"]["displayName"] == "Alice"

        reply = await _http("POST", f"http://{base_url}/clients/alice/notify", {"text": "hi"})
        assert reply == {"acknowledged": True}
        assert client.notifications[-1].text == "hi"
    finally:
        await client.disconnect()


async def test_fastapi_app_answers_404_for_an_unknown_client(base_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        await _http("POST", f"http://{base_url}/clients/nobody/notify", {"text": "hi"})
    assert raised.value.code == 404


async def test_fastapi_app_answers_the_liveness_and_readiness_probes(base_url: str) -> None:
    live = await _http("GET", f"http://{base_url}/livez")
    assert live == {"status": "live"}
    ready = await _http("GET", f"http://{base_url}/readyz")
    assert ready["status"] == "ready"
    assert ready["mesh_joined"] is True and ready["redis_reachable"] is True
    assert ready["node_id"] >= 1


async def test_fastapi_app_serves_metrics_when_asked(redis_settings: RedisSettings) -> None:
    app = create_app(redis_settings, metrics=True, allow_unsigned=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                await asyncio.sleep(0.02)

        def scrape() -> str:
            url = f"http://127.0.0.1:{port}/metrics/"
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        text = await asyncio.to_thread(scrape)
        assert "meshsrpc_connected_clients 0.0" in text
        assert "meshsrpc_client_connects_total 0.0" in text
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
