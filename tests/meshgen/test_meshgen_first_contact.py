"""What a new app's generated classes check for it: typed metadata, misspelled handlers,
broadcast payloads. A support-desk app, generated fresh, over real loopback WebSockets."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio
from meshgen.generate import Request, generate
from meshgen.output import write_files
from meshgen_helpers import app_proto
from meshsrpc import RedisSettings, SrpcError
from meshsrpc.redis_server import RedisServer
from meshsrpc.srpc.clientmeta import ClientMetaSchema

pytestmark = pytest.mark.timeout(60)

SECRET = "desk-secret"

DESK = app_proto(
    """\
    UOpenTicketRequest uOpenTicketRequest = 1000;
    DPushReplyResponse dPushReplyResponse = 1001;""",
    """\
    UOpenTicketResponse uOpenTicketResponse = 1000;
    DPushReplyRequest dPushReplyRequest = 1001;""",
    """\
enum Mood { MOOD_CALM = 0; MOOD_ANGRY = 1; }
message UOpenTicketRequest { string subject = 1; }
message UOpenTicketResponse { int32 ticketId = 1; }
message DPushReplyRequest { string text = 1; }
message DPushReplyResponse { bool seen = 1; }
message QueueStats { int32 waiting = 1; optional string note = 2; }
message Broadcasts { QueueStats queueStats = 1; }
message ClientMeta {
  string name = 1;
  int32 openTickets = 2;
  bool online = 3;
  double score = 4;
  Mood mood = 5;
  repeated string tags = 6;
  int64 since = 7;
}
""",
    package="desk",
)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The support desk's generated `desk_srpc` module."""
    root = tmp_path_factory.mktemp("desk")
    proto = root / "desk.proto"
    proto.write_text(DESK)
    write_files(str(root / "desk_app"), generate(Request(str(proto))))
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("desk_app.desk_srpc")
    finally:
        sys.path.remove(str(root))


@pytest.fixture
async def server(desk: ModuleType) -> AsyncIterator[Any]:
    server = desk.DeskSrpcServer(auth_secret=SECRET)
    await server.listen("127.0.0.1", 0)
    yield server
    await server.close()


@pytest.fixture
async def connect(desk: ModuleType, server: Any) -> AsyncIterator[Any]:
    clients: list[Any] = []

    async def connect(client_id: str, meta: dict[str, Any]) -> Any:
        url = f"ws://127.0.0.1:{server.port}/srpc"
        client = desk.DeskSrpcClient(url, client_id, client_meta=meta, client_secret=SECRET)
        clients.append(client)
        await client.connect()
        return server.streams_by_client_id[client_id]

    yield connect
    for client in clients:
        await client.disconnect()


# --- 1. ClientMeta values have the types the TypedDict declares ----------------------


async def test_metadata_values_arrive_as_the_declared_types(connect: Any) -> None:
    meta = {
        "name": "Alice",
        "openTickets": 3,
        "online": True,
        "score": 4.5,
        "mood": "MOOD_ANGRY",
        "tags": ["vip", "fr"],
        "since": 2**53 + 1,
    }
    stream = await connect("alice", meta)
    assert dict(stream.meta) == meta
    assert type(stream.meta["openTickets"]) is int and type(stream.meta["online"]) is bool


async def test_metadata_written_by_a_typescript_client_converts(connect: Any) -> None:
    # String(value) in TypeScript: "3", "false", "0.5"; enums by value name.
    text = {"openTickets": "3", "online": "false", "score": "0.5", "mood": "MOOD_CALM"}
    stream = await connect("bob", text)
    assert dict(stream.meta) == {
        "openTickets": 3,
        "online": False,
        "score": 0.5,
        "mood": "MOOD_CALM",
    }


async def test_a_client_without_metadata_has_none_of_the_keys(connect: Any) -> None:
    stream = await connect("carol", {})
    assert dict(stream.meta) == {}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("openTickets", "three", "expected an integer"),
        ("online", "maybe", "expected true or false"),
        ("score", "high", "expected a number"),
        ("mood", "MOOD_HAPPY", "expected one of MOOD_CALM, MOOD_ANGRY"),
        ("tags", "vip", "expected JSON"),
    ],
)
async def test_a_value_that_does_not_convert_is_refused_with_400_naming_the_field(
    connect: Any, field: str, value: str, expected: str
) -> None:
    with pytest.raises(SrpcError, match="HTTP 400") as refused:
        await connect("dave", {field: value})
    assert f"m--{field}" in str(refused.value) and expected in str(refused.value)


async def test_metadata_keys_not_in_the_proto_stay_strings(connect: Any) -> None:
    stream = await connect("erin", {"locale": "fr", "openTickets": "1"})
    assert dict(stream.meta) == {"locale": "fr", "openTickets": 1}


def test_the_generated_schema_lists_the_converted_keys(desk: ModuleType) -> None:
    schema = desk.DeskSrpcServer.client_meta_schema
    assert isinstance(schema, ClientMetaSchema)
    # strings need no conversion; every other field does
    assert set(schema.converters) == {"openTickets", "online", "score", "mood", "tags", "since"}
    assert desk.DeskMeshSrpcServer.client_meta_schema is schema


# --- 3. a misspelled handler is refused when the class is created ---------------------


def test_a_misspelled_server_handler_is_refused_with_a_suggestion(desk: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"handle_u_open_tiket .*did you mean handle_u_open_ticket"):

        class Desk(desk.DeskMeshSrpcServer):
            async def handle_u_open_tiket(self, stream: Any, request: Any) -> Any: ...


def test_a_misspelled_client_handler_is_refused_with_a_suggestion(desk: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"handle_d_push_replly .*did you mean handle_d_push_reply"):

        class Agent(desk.DeskSrpcClient):
            async def handle_d_push_replly(self, request: Any) -> Any: ...


def test_a_misspelled_broadcast_receiver_is_refused_with_a_suggestion(desk: ModuleType) -> None:
    with pytest.raises(
        TypeError, match=r"on_broadcast_queue_stat .*did you mean on_broadcast_queue_stats"
    ):

        class Desk(desk.DeskMeshSrpcServer):
            async def on_broadcast_queue_stat(self, data: Any, sender: int) -> None: ...


def test_a_single_process_server_refuses_a_client_side_handler(desk: ModuleType) -> None:
    # handle_d_push_reply is the client's handler: on a server it would never run.
    with pytest.raises(TypeError, match="handle_d_push_reply handles no call"):

        class Desk(desk.DeskSrpcServer):
            async def handle_d_push_reply(self, stream: Any, request: Any) -> Any: ...


def test_correct_overrides_and_other_methods_are_accepted(desk: ModuleType) -> None:
    class Desk(desk.DeskMeshSrpcServer):
        async def handle_u_open_ticket(self, stream: Any, request: Any) -> Any: ...

        async def on_broadcast_queue_stats(self, data: Any, sender: int) -> None: ...

        def helper(self) -> None: ...

    class Subclass(Desk):
        async def handle_u_open_ticket(self, stream: Any, request: Any) -> Any: ...

    assert Subclass.__mro__[1] is Desk


# --- 4. broadcast payloads are checked (keys) before anything is sent -----------------


async def test_a_broadcast_missing_a_key_raises_type_error_at_the_sender(desk: ModuleType) -> None:
    server = desk.DeskMeshSrpcServer(mesh_key="desk", redis="memory://desk-missing-key")
    with pytest.raises(
        TypeError, match=r"queueStats is missing key\(s\) waiting \(unknown: wating\)"
    ):
        await server.broadcast_queue_stats({"wating": 3})
    with pytest.raises(TypeError, match="missing key"):
        await server.broadcast("queueStats", {"note": "busy"})


async def test_a_broadcast_that_is_not_a_dict_raises_type_error(desk: ModuleType) -> None:
    server = desk.DeskMeshSrpcServer(mesh_key="desk", redis="memory://desk-not-a-dict")
    with pytest.raises(TypeError, match="expects a dict payload, got list"):
        await server.broadcast_queue_stats([("waiting", 3)])


async def test_a_complete_broadcast_is_delivered(desk: ModuleType) -> None:
    received: list[dict[str, Any]] = []

    class Desk(desk.DeskMeshSrpcServer):
        async def on_broadcast_queue_stats(self, data: Any, sender: int) -> None:
            received.append(data)

    server = Desk(mesh_key="desk", redis="memory://desk-complete")
    await server.mesh_start()
    try:
        await server.broadcast_queue_stats({"waiting": 3})  # the optional note left out
    finally:
        await server.mesh_stop()
    assert received == [{"waiting": 3}]


async def test_the_registry_holds_the_converted_values_as_proto_json(
    desk: ModuleType, redis_server: RedisServer, redis_settings: RedisSettings
) -> None:
    # What a TypeScript node reads: numbers and booleans, as ts-proto's fromJSON expects.
    node = desk.DeskMeshSrpcServer(mesh_key="desk", redis=redis_settings, auth_secret=SECRET)
    await node.listen("127.0.0.1", 0)
    await node.mesh_start()
    url = f"ws://127.0.0.1:{node.port}/srpc"
    meta = {"openTickets": 3, "online": True, "mood": "MOOD_ANGRY"}
    client = desk.DeskSrpcClient(url, "alice", client_meta=meta, client_secret=SECRET)
    try:
        await client.connect()
        key = f"{redis_settings.prefix}:mesh:_mc:desk:clients"
        async with redis.asyncio.from_url(redis_server.url) as store:
            for _ in range(250):
                raw = await store.hget(key, "alice")
                if raw is not None:
                    break
                await asyncio.sleep(0.02)
        assert raw is not None, "the client was not registered"
        entry = json.loads(raw)
        assert entry["hasMetadata"] is True
        assert entry["metadata"] == meta
    finally:
        await client.disconnect()
        await node.mesh_stop()
        await node.close()
