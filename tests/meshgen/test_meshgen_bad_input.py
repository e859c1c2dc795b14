"""Bad input: every problem is named with file:line and field, exit code 2, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from meshgen_helpers import Run, app_proto, line_of

GOOD_CLIENT = "    EchoRequest uEchoRequest = 1000;"
GOOD_SERVER = "    EchoResponse uEchoResponse = 1000;"

# name → (proto text, the line's marker, the field the message must name, words of the message)
CASES: dict[str, tuple[str, str, str, str]] = {
    "request without response": (
        app_proto(GOOD_CLIENT + "\n    EchoRequest uLostRequest = 1001;", GOOD_SERVER),
        "uLostRequest = 1001",
        "ClientMessage.uLostRequest",
        "has no uLostResponse in ServerMessage",
    ),
    "downstream request without response": (
        app_proto(GOOD_CLIENT, GOOD_SERVER + "\n    EchoRequest dPingRequest = 2000;"),
        "dPingRequest = 2000",
        "ServerMessage.dPingRequest",
        "has no dPingResponse in ClientMessage",
    ),
    "response without request": (
        app_proto(GOOD_CLIENT, GOOD_SERVER + "\n    EchoResponse uOrphanResponse = 1001;"),
        "uOrphanResponse = 1001",
        "ServerMessage.uOrphanResponse",
        "has no uOrphanRequest in ClientMessage",
    ),
    "non-message field in the oneof": (
        app_proto(GOOD_CLIENT + "\n    string uTextRequest = 1001;", GOOD_SERVER),
        "uTextRequest = 1001",
        "ClientMessage.uTextRequest",
        "is a string; the oneof holds only message fields",
    ),
    "app field outside the oneof": (
        app_proto(GOOD_CLIENT, GOOD_SERVER).replace(
            "  bool reply = 2;\n", "  bool reply = 2;\n  EchoRequest uLooseRequest = 6;\n", 1
        ),
        "uLooseRequest = 6",
        "ClientMessage.uLooseRequest",
        "app fields belong in the container's oneof",
    ),
    "field named neither Request nor Response": (
        app_proto(GOOD_CLIENT + "\n    EchoRequest uEchoStuff = 1001;", GOOD_SERVER),
        "uEchoStuff = 1001",
        "ClientMessage.uEchoStuff",
        "must be <prefix>Request or <prefix>Response",
    ),
    "framework field with a wrong type": (
        app_proto(GOOD_CLIENT, GOOD_SERVER).replace(
            "  string requestId = 1;", "  int32 requestId = 1;", 1
        ),
        "int32 requestId = 1",
        "ClientMessage.requestId",
        'framework field must be string = 1, outside the oneof: "string requestId = 1;" '
        "(docs/wire.md §4)",
    ),
    "framework field missing": (
        app_proto(GOOD_CLIENT, GOOD_SERVER).replace("  optional TraceContext trace = 5;\n", "", 1),
        "message ClientMessage",
        "ClientMessage.trace",
        'framework field missing: add "optional TraceContext trace = 5;" (docs/wire.md §4)',
    ),
    "missing client container": (
        app_proto(GOOD_CLIENT, GOOD_SERVER, client_name="Upstream"),
        "package demo.App;",
        "ClientMessage",
        "no message ClientMessage (client container); add it",
    ),
    "missing server container": (
        app_proto(GOOD_CLIENT, GOOD_SERVER, server_name="Downstream"),
        "package demo.App;",
        "ServerMessage",
        "no message ServerMessage (server container)",
    ),
    "broadcast that is not a message": (
        app_proto(
            GOOD_CLIENT,
            GOOD_SERVER,
            "message Hello { string text = 1; }\n"
            "message Broadcasts {\n  Hello hello = 1;\n  string shout = 2;\n}\n",
        ),
        "string shout = 2",
        "Broadcasts.shout",
        "is a string; a broadcast's payload is a message",
    ),
    "broadcast that is repeated": (
        app_proto(
            GOOD_CLIENT,
            GOOD_SERVER,
            "message Hello { string text = 1; }\n"
            "message Broadcasts {\n  repeated Hello hellos = 1;\n}\n",
        ),
        "repeated Hello hellos = 1",
        "Broadcasts.hellos",
        "is a repeated field",
    ),
    "package that is a Python keyword": (
        app_proto(GOOD_CLIENT, GOOD_SERVER, package="demo.lambda"),
        "package demo.lambda;",
        "demo.lambda",
        "package part 'lambda' is not a Python name",
    ),
    "proto that does not compile": (
        app_proto(GOOD_CLIENT, GOOD_SERVER, "message Broken { strin text = 1; }\n"),
        "message Broken",
        "",
        '"strin" is not defined',
    ),
    "import that is not found": (
        app_proto(GOOD_CLIENT, GOOD_SERVER).replace(
            "package demo.App;", 'package demo.App;\nimport "nowhere/missing.proto";', 1
        ),
        'import "nowhere/missing.proto"',
        "",
        "not found",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_and_field(
    case: str, tmp_path: Path, meshgen: Callable[..., Run]
) -> None:
    text, marker, field, words = CASES[case]
    proto = tmp_path / "app.proto"
    proto.write_text(text)
    out = tmp_path / "generated"
    run = meshgen(str(proto), "-o", str(out))
    assert run.code == 2, run.err
    line = line_of(text, marker)
    located = [entry for entry in run.err.splitlines() if f"{proto}:{line}:" in entry]
    assert located, run.err
    assert any(field in entry and words in entry for entry in located), run.err
    assert "nothing was written" in run.err
    assert not out.exists()


def test_a_missing_container_is_shown_as_the_message_to_add(
    tmp_path: Path, meshgen: Callable[..., Run]
) -> None:
    proto = tmp_path / "app.proto"
    proto.write_text(app_proto(GOOD_CLIENT, GOOD_SERVER, server_name="Downstream"))
    run = meshgen(str(proto), "-o", str(tmp_path / "generated"))
    assert run.code == 2
    for line in (
        "    message ServerMessage {",
        "      string requestId = 1;",
        "      optional TraceContext trace = 5;",
        "      oneof response {",
        "        ByteStreamOperation byteStreamOperation = 51;",
    ):
        assert f"\n{line}\n" in run.err, run.err
