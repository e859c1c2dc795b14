"""The app as data: calls, broadcasts and client metadata read from the descriptors, validated.

Every rule violation is collected (file, line, field) and reported together.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

from .clientmeta import MetaField, converter_names, meta_fields
from .naming import ImportFrom, MessageRef, MessageRefs, snake
from .problems import MeshgenError, Problem
from .protoindex import MessageInfo, ProtoIndex, doc_lines
from .typeddicts import TypedDictBuilder, TypedDictSpec

_F = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True)
class Containers:
    """The names of the messages meshgen reads (changeable from the command line)."""

    client_message: str = "ClientMessage"
    server_message: str = "ServerMessage"
    broadcasts: str = "Broadcasts"
    client_meta: str = "ClientMeta"
    broadcasts_required: bool = False  # True when named explicitly: then it must exist
    client_meta_required: bool = False


@dataclass(frozen=True)
class _FrameworkField:
    number: int
    type: int  # FieldDescriptorProto.Type
    in_oneof: bool
    declaration: str  # the line to add to the proto


# docs/wire.md §4: shared by ClientMessage and ServerMessage, never calls.
FRAMEWORK_FIELDS: dict[str, _FrameworkField] = {
    "requestId": _FrameworkField(1, _F.TYPE_STRING, False, "string requestId = 1;"),
    "reply": _FrameworkField(2, _F.TYPE_BOOL, False, "bool reply = 2;"),
    "error": _FrameworkField(3, _F.TYPE_STRING, False, "optional string error = 3;"),
    "userError": _FrameworkField(4, _F.TYPE_BOOL, False, "optional bool userError = 4;"),
    "trace": _FrameworkField(5, _F.TYPE_MESSAGE, False, "optional TraceContext trace = 5;"),
    "pingPong": _FrameworkField(50, _F.TYPE_MESSAGE, True, "PingPong pingPong = 50;"),
    "byteStreamOperation": _FrameworkField(
        51, _F.TYPE_MESSAGE, True, "ByteStreamOperation byteStreamOperation = 51;"
    ),
}
_WIRE_DOC = "docs/wire.md §4"


def container_skeleton(name: str, oneof: str) -> str:
    """The container message to paste into a proto that lacks it."""
    plain = [f.declaration for f in FRAMEWORK_FIELDS.values() if not f.in_oneof]
    in_oneof = [f.declaration for f in FRAMEWORK_FIELDS.values() if f.in_oneof]
    lines = [
        f"message {name} {{",
        *(f"  {line}" for line in plain),
        f"  oneof {oneof} {{",
        *(f"    {line}" for line in in_oneof),
        "    // the app's <prefix>Request / <prefix>Response fields, numbered from 1000",
        "  }",
        "}",
    ]
    return "\n".join(f"    {line}" for line in lines)


_TYPE_NAMES: dict[int, str] = {int(v): k.removeprefix("TYPE_").lower() for k, v in _F.Type.items()}


@dataclass(frozen=True)
class Call:
    """One request/response pair: upstream (client → server) or downstream (server → client)."""

    prefix: str  # "uEcho"
    snake: str  # "u_echo"
    request: MessageRef
    response: MessageRef
    doc: tuple[str, ...]


@dataclass(frozen=True)
class Broadcast:
    """One broadcast type and its JSON payload."""

    type: str  # "lobbyClosed"
    snake: str  # "lobby_closed"
    payload: str  # TypedDict name
    doc: tuple[str, ...]
    required: tuple[str, ...]  # the payload's keys a sender must give
    keys: tuple[str, ...]  # all its keys


@dataclass(frozen=True)
class CallSet:
    """The calls one side invokes, with how to type `invoke`: never, one signature, or overloads."""

    calls: tuple[Call, ...]

    @property
    def mode(self) -> str:
        """How `invoke` is typed for these calls (see call_mode)."""
        return call_mode(len(self.calls))


@dataclass(frozen=True)
class App:
    """Everything the templates need to render `<stem>_srpc.py`."""

    name: str
    stem: str
    source: str  # the proto as given on the command line
    source_name: str  # the proto's name as protoc sees it
    package: str
    doc: tuple[str, ...]
    meta_type: str  # the MetaT of MeshSrpcServer
    meta_update_type: str  # what update_client_metadata takes
    meta_fields: tuple[MetaField, ...]  # the ClientMeta keys converted at the handshake
    meta_converters: tuple[str, ...]  # the runtime helpers meta_fields use
    client_message: MessageRef
    server_message: MessageRef
    upstream: CallSet
    downstream: CallSet
    broadcasts: tuple[Broadcast, ...]
    broadcasts_mode: str
    typed_dicts: tuple[TypedDictSpec, ...]
    client_meta: str | None
    message_imports: tuple[ImportFrom, ...]
    typing_imports: tuple[str, ...]
    all_names: tuple[str, ...]


@dataclass
class _Collector:
    index: ProtoIndex
    problems: list[Problem] = field(default_factory=list)

    def at_field(self, message: MessageInfo, i: int, message_text: str) -> None:
        where = self.index.field_source(message, i)
        name = f"{message.proto.name}.{message.proto.field[i].name}"
        self.problems.append(Problem(where.file, where.line, message_text, name))

    def at_message(self, message: MessageInfo, field_name: str, message_text: str) -> None:
        where = self.index.message_source(message)
        self.problems.append(Problem(where.file, where.line, message_text, field_name))


@dataclass(frozen=True)
class _AppField:
    container: MessageInfo
    index: int
    message: MessageInfo


def build_app(
    index: ProtoIndex, *, source: str, stem: str, name: str, containers: Containers
) -> App:
    """Read and validate the app; raises MeshgenError with every problem found."""
    collector = _Collector(index)
    main_source = index.main_file_source()
    found: dict[str, MessageInfo] = {}
    for role, wanted, required, oneof in (
        ("client container", containers.client_message, True, "request"),
        ("server container", containers.server_message, True, "response"),
        ("broadcasts", containers.broadcasts, containers.broadcasts_required, ""),
        ("client metadata", containers.client_meta, containers.client_meta_required, ""),
    ):
        message = index.top_level_message(wanted)
        if message is not None:
            found[role] = message
        elif required:
            text = f"no message {wanted} ({role})"
            if oneof:
                # A new user's first run: show what to add, not just what is missing.
                text += (
                    "; add it (PingPong, ByteStreamOperation and TraceContext as in "
                    f"docs/generator.md):\n{container_skeleton(wanted, oneof)}"
                )
            collector.problems.append(Problem(main_source.file, main_source.line, text, wanted))
    package_problems = _check_package(index)
    collector.problems.extend(package_problems)
    client = found.get("client container")
    server = found.get("server container")
    client_fields = _app_fields(collector, client) if client else {}
    server_fields = _app_fields(collector, server) if server else {}

    refs = MessageRefs(index.compiled.file(index.compiled.main).package)
    upstream: list[Call] = []
    downstream: list[Call] = []
    if client and server:
        upstream = _pair_calls(
            collector, refs, client_fields, server_fields, client.proto.name, server.proto.name
        )
        downstream = _pair_calls(
            collector, refs, server_fields, client_fields, server.proto.name, client.proto.name
        )
    _check_collisions(collector, upstream, "upstream")
    _check_collisions(collector, downstream, "downstream")

    dicts = TypedDictBuilder(index)
    broadcasts = _broadcasts(collector, dicts, found.get("broadcasts"))
    meta = found.get("client metadata")
    client_meta = dicts.add(meta, all_optional=True) if meta else None
    client_meta_update = dicts.add_update(meta) if meta else None
    fields = meta_fields(index, meta) if meta else ()

    if collector.problems:
        raise MeshgenError(collector.problems)
    assert client is not None and server is not None  # reported above otherwise
    client_ref = refs.ref(client)
    server_ref = refs.ref(server)
    names = _all_names(name, dicts.ordered(), broadcasts)
    modes = {call_mode(len(upstream)), call_mode(len(downstream)), call_mode(len(broadcasts))}
    typing_imports = ["Any", "TypeVar", "Unpack"]
    if "none" in modes:
        typing_imports.append("Never")
    if "overloads" in modes:
        typing_imports.append("overload")
    if modes != {"none"} or dicts.uses_literal:
        typing_imports.append("Literal")
    if dicts.specs or broadcasts:
        typing_imports.append("TypedDict")
    if dicts.uses_not_required:
        typing_imports.append("NotRequired")
    main = index.compiled.file(index.compiled.main)
    return App(
        name=name,
        stem=stem,
        source=source,
        source_name=main.name,
        package=main.package,
        doc=(
            f"Typed SRPC classes for {main.name}"
            + (f" (package {main.package})." if main.package else "."),
        ),
        meta_type=client_meta or "dict[str, Any]",
        meta_update_type=client_meta_update or "Mapping[str, Any]",
        meta_fields=fields,
        meta_converters=converter_names(fields),
        client_message=client_ref,
        server_message=server_ref,
        upstream=CallSet(tuple(upstream)),
        downstream=CallSet(tuple(downstream)),
        broadcasts=tuple(broadcasts),
        broadcasts_mode=call_mode(len(broadcasts)),
        typed_dicts=tuple(dicts.ordered()),
        client_meta=client_meta,
        message_imports=refs.imports(),
        typing_imports=tuple(sorted(typing_imports)),
        all_names=tuple(sorted(names)),
    )


def _check_package(index: ProtoIndex) -> list[Problem]:
    # betterproto2 lays packages out as folders; a keyword folder cannot be imported.
    problems = []
    main = index.compiled.file(index.compiled.main)
    for part in main.package.split(".") if main.package else ():
        if keyword.iskeyword(part) or not part.isidentifier():
            where = index.main_file_source()
            problems.append(
                Problem(
                    where.file,
                    where.line,
                    f"package part {part!r} is not a Python name",
                    main.package,
                )
            )
    return problems


def _app_fields(collector: _Collector, container: MessageInfo) -> dict[str, _AppField]:
    """The app's message fields of a container, by field name; framework fields checked."""
    index = collector.index
    proto = container.proto
    seen_framework: set[str] = set()
    app_oneofs: set[int] = set()
    fields: dict[str, _AppField] = {}
    for i, f in enumerate(proto.field):
        in_real_oneof = f.HasField("oneof_index") and not f.proto3_optional
        expected = FRAMEWORK_FIELDS.get(f.name)
        if expected is not None:
            seen_framework.add(f.name)
            if (f.number, f.type, in_real_oneof) != (
                expected.number,
                expected.type,
                expected.in_oneof,
            ):
                place = "in the oneof" if expected.in_oneof else "outside the oneof"
                collector.at_field(
                    container,
                    i,
                    f"framework field must be {_TYPE_NAMES[expected.type]} = {expected.number}, "
                    f'{place}: "{expected.declaration}" ({_WIRE_DOC})',
                )
            continue
        if not in_real_oneof:
            collector.at_field(container, i, "app fields belong in the container's oneof")
            continue
        app_oneofs.add(f.oneof_index)
        if f.type != _F.TYPE_MESSAGE:
            collector.at_field(
                container, i, f"is a {_TYPE_NAMES[f.type]}; the oneof holds only message fields"
            )
            continue
        if not re.fullmatch(r".+(Request|Response)", f.name):
            collector.at_field(
                container, i, "an app field's name must be <prefix>Request or <prefix>Response"
            )
            continue
        fields[f.name] = _AppField(container, i, index.messages[f.type_name])
    for missing in sorted(FRAMEWORK_FIELDS.keys() - seen_framework):
        spec = FRAMEWORK_FIELDS[missing]
        where = " inside its oneof" if spec.in_oneof else ""
        collector.at_message(
            container,
            f"{proto.name}.{missing}",
            f'framework field missing: add "{spec.declaration}"{where} ({_WIRE_DOC})',
        )
    if len(app_oneofs) > 1:
        collector.at_message(container, proto.name, "app fields must all be in one oneof")
    return fields


def _pair_calls(
    collector: _Collector,
    refs: MessageRefs,
    requests_side: dict[str, _AppField],
    responses_side: dict[str, _AppField],
    requests_container: str,
    responses_container: str,
) -> list[Call]:
    """Calls whose requests one container sends and whose responses the other sends."""
    calls = []
    for field_name, request in requests_side.items():
        if not field_name.endswith("Request"):
            continue
        prefix = field_name.removesuffix("Request")
        response = responses_side.get(f"{prefix}Response")
        if response is None:
            collector.at_field(
                request.container,
                request.index,
                f"has no {prefix}Response in {responses_container} (a call needs both sides)",
            )
            continue
        doc = _call_doc(collector.index, request)
        calls.append(
            Call(prefix, snake(prefix), refs.ref(request.message), refs.ref(response.message), doc)
        )
    for field_name, response in responses_side.items():
        prefix = field_name.removesuffix("Response")
        if field_name.endswith("Response") and f"{prefix}Request" not in requests_side:
            collector.at_field(
                response.container,
                response.index,
                f"has no {prefix}Request in {requests_container} (a call needs both sides)",
            )
    return sorted(calls, key=lambda c: c.prefix)


def _call_doc(index: ProtoIndex, request: _AppField) -> tuple[str, ...]:
    # The comment on the container's field, else the one on the request message.
    comment = index.field_source(request.container, request.index).comment
    if not comment:
        comment = index.message_source(request.message).comment
    return doc_lines(comment)


def _check_collisions(collector: _Collector, calls: list[Call], kind: str) -> None:
    seen: dict[str, str] = {}
    for call in calls:
        if call.snake in seen:
            collector.problems.append(
                Problem(
                    collector.index.compiled.display_name(collector.index.compiled.main),
                    0,
                    f"{kind} calls {seen[call.snake]} and {call.prefix} both become "
                    f"methods named *_{call.snake}",
                    call.prefix,
                )
            )
        seen[call.snake] = call.prefix


def _broadcasts(
    collector: _Collector, dicts: TypedDictBuilder, container: MessageInfo | None
) -> list[Broadcast]:
    if container is None:
        return []
    broadcasts = []
    snakes: dict[str, str] = {}
    for i, f in enumerate(container.proto.field):
        if f.type != _F.TYPE_MESSAGE or f.label == _F.LABEL_REPEATED:
            kind = "repeated field" if f.label == _F.LABEL_REPEATED else _TYPE_NAMES[f.type]
            collector.at_field(container, i, f"is a {kind}; a broadcast's payload is a message")
            continue
        payload = collector.index.messages[f.type_name]
        if payload.is_map_entry:
            collector.at_field(container, i, "is a map; a broadcast's payload is a message")
            continue
        method = snake(f.name)
        if method in snakes:
            collector.at_field(container, i, f"becomes broadcast_{method}, like {snakes[method]}")
            continue
        snakes[method] = f.name
        comment = collector.index.field_source(container, i).comment
        if not comment:
            comment = collector.index.message_source(payload).comment
        name = dicts.add(payload)
        spec = dicts.specs[payload.full_name]
        keys = tuple(key.name for key in spec.keys)
        required = tuple(k.name for k in spec.keys if not k.annotation.startswith("NotRequired["))
        broadcasts.append(Broadcast(f.name, method, name, doc_lines(comment), required, keys))
    return broadcasts


def call_mode(count: int) -> str:
    """How to type `invoke`/`broadcast`: "none", "single", or "overloads" (mypy needs two)."""
    return {0: "none", 1: "single"}.get(count, "overloads")


def _all_names(name: str, dicts: list[TypedDictSpec], broadcasts: list[Broadcast]) -> list[str]:
    names = [f"{name}MeshSrpcServer", f"{name}SrpcServer", f"{name}SrpcClient"]
    names += [spec.name for spec in dicts]
    if broadcasts:
        names.append(f"{name}Broadcasts")
    return names
