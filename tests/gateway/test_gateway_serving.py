"""Serving the gateway: loopback by default, a bearer-token hook, TLS."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from meshsrpc.gateway import GatewayRequest, bearer_token
from srpc_test_gateway.sgnl24.TestRpc.gateway import ListClientsRequest
from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub


async def test_right_bearer_token_is_served(make_node: Callable[..., Any]) -> None:
    node = await make_node()
    gateway = await node.serve_gateway(authenticate=bearer_token("old", "s3cret"))
    channel = Channel("127.0.0.1", gateway.port)
    try:
        stub = SrpcTestGatewayStub(channel, metadata={"authorization": "Bearer s3cret"}, timeout=10)
        assert [c async for c in stub.list_clients(ListClientsRequest())] == []
    finally:
        channel.close()
        await gateway.close()


@pytest.mark.parametrize(
    "metadata",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}],
    ids=["no token", "wrong token", "not a bearer token"],
)
async def test_missing_or_wrong_token_is_unauthenticated(
    make_node: Callable[..., Any], metadata: dict[str, str]
) -> None:
    node = await make_node()
    gateway = await node.serve_gateway(authenticate=bearer_token("s3cret"))
    channel = Channel("127.0.0.1", gateway.port)
    try:
        stub = SrpcTestGatewayStub(channel, metadata=metadata, timeout=10)
        with pytest.raises(GRPCError) as caught:
            [c async for c in stub.list_clients(ListClientsRequest())]
        assert caught.value.status is Status.UNAUTHENTICATED
    finally:
        channel.close()
        await gateway.close()


async def test_authenticator_sees_the_method_and_metadata(make_node: Callable[..., Any]) -> None:
    seen: list[GatewayRequest] = []

    async def authenticate(request: GatewayRequest) -> bool:
        seen.append(request)
        return request.metadata.get("x-caller") == "billing"

    node = await make_node()
    gateway = await node.serve_gateway(authenticate=authenticate)
    channel = Channel("127.0.0.1", gateway.port)
    try:
        stub = SrpcTestGatewayStub(channel, metadata={"x-caller": "billing"}, timeout=10)
        assert [c async for c in stub.list_clients(ListClientsRequest())] == []
    finally:
        channel.close()
        await gateway.close()
    assert seen[0].method == "/sgnl24.TestRpc.gateway.SrpcTestGateway/ListClients"


async def test_refuses_to_listen_off_loopback_without_an_authenticator(
    make_node: Callable[..., Any],
) -> None:
    node = await make_node()
    with pytest.raises(ValueError, match="without an authenticator"):
        await node.serve_gateway("0.0.0.0")


def test_bearer_token_needs_a_token() -> None:
    with pytest.raises(ValueError):
        bearer_token()
    with pytest.raises(ValueError):
        bearer_token("")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_gateway_serves_tls(
    make_node: Callable[..., Any], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server_context.set_alpn_protocols(["h2"])
    client_context = ssl.create_default_context(cafile=str(cert))
    client_context.set_alpn_protocols(["h2"])

    node = await make_node()
    gateway = await node.serve_gateway(ssl=server_context)
    channel = Channel("127.0.0.1", gateway.port, ssl=client_context)
    try:
        stub = SrpcTestGatewayStub(channel, timeout=10)
        assert [c async for c in stub.list_clients(ListClientsRequest())] == []
    finally:
        channel.close()
        await gateway.close()
