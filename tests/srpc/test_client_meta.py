"""Client metadata in the handshake: m-- text typed by a ClientMetaSchema, else 400."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from meshsrpc import SrpcClient, SrpcError, SrpcServer
from meshsrpc.mesh_server import MeshSrpcServer, MeshSrpcServerOptions
from meshsrpc.srpc.clientmeta import (
    ClientMetaError,
    ClientMetaSchema,
    encode_meta_value,
    meta_bool,
    meta_float,
    meta_int,
)
from meshsrpc.srpc.options import SrpcClientOptions, SrpcServerOptions

from tests.srpc._support import ClientFactory, ServerFactory

pytestmark = pytest.mark.timeout(30)

SCHEMA = ClientMetaSchema({"n": meta_int, "on": meta_bool, "x": meta_float})


def test_schema_converts_listed_names_and_keeps_others_as_text() -> None:
    parsed = SCHEMA.parse({"n": "-7", "on": "TRUE", "x": "1e3", "s": "007"})
    assert parsed == {"n": -7, "on": True, "x": 1000.0, "s": "007"}


def test_schema_error_names_the_field_and_what_was_expected() -> None:
    with pytest.raises(ClientMetaError, match=r"m--n: expected an integer, got '1.5'"):
        SCHEMA.parse({"n": "1.5"})


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (3, "3"), (0.5, "0.5"), ("a b", "a b"), (["x"], '["x"]')],
)
def test_client_encodes_values_as_the_schema_reads_them(value: object, text: str) -> None:
    assert encode_meta_value(value) == text


async def test_server_with_a_schema_types_stream_meta(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret="s")
    server.client_meta_schema = SCHEMA
    client = make_client(server, client_secret="s", client_meta={"n": 2, "on": False, "s": "t"})
    await client.connect()
    assert dict(server.streams_by_client_id["c1"].meta) == {"n": 2, "on": False, "s": "t"}


async def test_server_with_a_schema_refuses_a_bad_value_with_400(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret="s")
    server.client_meta_schema = SCHEMA
    with pytest.raises(SrpcError, match=r"HTTP 400 .*m--on: expected true or false"):
        await make_client(server, client_secret="s", client_meta={"on": "yes"}).connect()
    assert not server.streams_by_id


async def test_server_without_a_schema_keeps_text(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret="s")
    await make_client(server, client_secret="s", client_meta={"n": 2}).connect()
    assert dict(server.streams_by_client_id["c1"].meta) == {"n": "2"}


def _keywords(function: Callable[..., object]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_option_typeddicts_list_every_keyword_argument() -> None:
    # Subclasses pass options through typed by these: a new option must be added here too.
    assert set(SrpcServerOptions.__annotations__) == _keywords(SrpcServer.__init__)
    assert set(SrpcClientOptions.__annotations__) == _keywords(SrpcClient.__init__) - {
        "client_meta"
    }
    mesh_only = _keywords(MeshSrpcServer.__init__) - {"mesh_key"}
    assert set(MeshSrpcServerOptions.__annotations__) == mesh_only | _keywords(SrpcServer.__init__)
