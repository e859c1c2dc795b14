"""Upgrade-time checks: required params, signatures, authorizers, key fetchers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from meshsrpc import SrpcError
from meshsrpc.srpc.auth import HandshakeRequest, sign
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests.srpc._support import ClientFactory, ServerFactory, eventually, url_of


async def status_of(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, compression=None):
            pass
    return refused.value.response.status_code


def signed_query(secret: str, *, ts: int | None = None, cid: str = "c1") -> str:
    ts_s = str(ts if ts is not None else int(time.time() * 1000))
    signature = sign(secret, "1", "2.0", ts_s, "sid", cid)
    return f"?authv=1&appv=2.0&ts={ts_s}&id=sid&cid={cid}&signature={signature}"


@pytest.mark.parametrize(
    "query", ["?cid=c&appv=1", "?id=i&appv=1", "?id=i&cid=c", "?id=&cid=c&appv=1", ""]
)
async def test_missing_params_are_400(make_server: ServerFactory, query: str) -> None:
    server = await make_server()
    assert await status_of(url_of(server) + query) == 400


async def test_wrong_path_is_404(make_server: ServerFactory) -> None:
    server = await make_server()
    assert await status_of(url_of(server, "/other") + "?id=i&cid=c&appv=1") == 404


async def test_signature_checks(make_server: ServerFactory, make_client: ClientFactory) -> None:
    server = await make_server(auth_secret="s3cret", clock_drift=30.0)
    base = url_of(server)
    assert await status_of(base + "?id=i&cid=c1&appv=1") == 403  # unsigned
    assert await status_of(base + signed_query("wrong")) == 403
    stale = int(time.time() * 1000) - 31_000
    assert await status_of(base + signed_query("s3cret", ts=stale)) == 403
    async with ws_connect(base + signed_query("s3cret"), compression=None) as ws:
        assert await ws.recv() == bytes.fromhex("920300")
    # The client signs the query itself.
    with pytest.raises(SrpcError, match="403"):
        await make_client(server, client_secret="wrong").connect()
    client = make_client(server, client_secret="s3cret")
    await client.connect()
    assert client.is_connected


async def test_secret_from_environment(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRPC_AUTH_SECRET", "from-env")
    server = await make_server()
    assert await status_of(url_of(server) + signed_query("other")) == 403
    async with ws_connect(url_of(server) + signed_query("from-env"), compression=None) as ws:
        assert await ws.recv() == bytes.fromhex("920300")


async def test_authorizer_dict_is_merged_into_meta(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret="ignored-when-authorizer-set")
    seen: list[HandshakeRequest] = []

    async def authorizer(
        query: Mapping[str, str], request: HandshakeRequest
    ) -> bool | dict[str, Any]:
        seen.append(request)
        if query["cid"] == "denied":
            return False
        return {"role": "admin", "cid_seen": query["cid"]}

    server.set_client_authorizer(authorizer)
    client = make_client(server, client_meta={"room": "lobby"})
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    assert stream.meta == {"room": "lobby", "role": "admin", "cid_seen": "c1"}
    assert stream.app_version == "1.0.0" and stream.protocol_version == 2
    assert seen[0].query["m--room"] == "lobby" and seen[0].remote_address.startswith("127.0.0.1:")
    assert await status_of(url_of(server) + "?id=i&cid=denied&appv=1") == 403


async def test_authorizer_error_is_500(make_server: ServerFactory) -> None:
    server = await make_server()

    def authorizer(query: Mapping[str, str], request: HandshakeRequest) -> bool:
        raise RuntimeError("db down")

    server.set_client_authorizer(authorizer)
    assert await status_of(url_of(server) + "?id=i&cid=c&appv=1") == 500


async def test_key_fetcher(make_server: ServerFactory, make_client: ClientFactory) -> None:
    server = await make_server()
    secrets = {"alice": "alice-key"}
    server.set_client_key_fetcher(lambda cid: secrets.get(cid))
    alice = make_client(server, "alice", client_secret="alice-key")
    await alice.connect()
    await eventually(lambda: "alice" in server.streams_by_client_id)
    with pytest.raises(SrpcError, match="403"):
        await make_client(server, "bob", client_secret="anything").connect()
    with pytest.raises(SrpcError, match="403"):
        await make_client(server, "alice2", client_secret="alice-key").connect()

    def broken(cid: str) -> str | None:
        raise RuntimeError("vault down")

    server.set_client_key_fetcher(broken)
    assert await status_of(url_of(server) + signed_query("x")) == 500
