"""The gRPC gateway of an app (``meshgen --gateway``): its .proto, grpclib stubs and implementation.

From the validated app: ``<stem>_gateway.proto`` (service ``<Name>Gateway``, one rpc per
downstream call and per broadcast type, plus ListClients and WatchPresence), the
betterproto2 messages, grpclib service base and client stub compiled from it, and
``<stem>_gateway.py``, the implementation bound to ``<Name>MeshSrpcServer``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from betterproto2_compiler.casing import pascal_case

from . import __version__
from .descriptors import CompiledProto, compile_proto
from .formatting import format_python
from .messages import generate_messages
from .model import App, Containers
from .naming import ImportFrom, MessageRef, MessageRefs, snake
from .problems import MeshgenError, Problem
from .protoindex import ProtoIndex
from .render import environment

# The service gets grpclib's base class and client stub; the app's messages come from
# the main run.
_GRPCLIB_PARAMETER = "client_generation=async,server_generation=async"
# Rpc names the gateway defines itself.
_FIXED_RPCS = ("ListClients", "WatchPresence")


@dataclass(frozen=True)
class GatewayRpc:
    """One rpc relaying a downstream call or sending a broadcast."""

    rpc: str  # "DNotify", "BroadcastRoomClosed"
    method: str  # betterproto2's method name: "d_notify"
    key: str  # the call prefix or broadcast type: "dNotify", "roomClosed"
    message: str  # the gateway's request message: "DNotifyGatewayRequest"
    payload_type: str  # ".sgnl24.TestRpc.DNotifyRequest"
    response_type: str  # ".sgnl24.TestRpc.DNotifyResponse" ("" for broadcasts)
    response: MessageRef | None
    server_method: str  # "invoke_d_notify", "broadcast_room_closed"
    doc: tuple[str, ...]


@dataclass(frozen=True)
class Gateway:
    """Everything the gateway templates need."""

    name: str
    stem: str
    app_proto: str  # the app proto as protoc names it (the gateway imports it)
    proto_name: str  # "<stem>_gateway.proto"
    package: str  # the gateway's proto package
    module: str  # its Python module, relative: ".sgnl24.TestRpc.gateway"
    calls: tuple[GatewayRpc, ...]
    broadcasts: tuple[GatewayRpc, ...]
    meta_type: str  # ".pkg.ClientMeta" or ".google.protobuf.Struct"
    meta: MessageRef | None  # the app's ClientMeta class, if any
    message_imports: tuple[ImportFrom, ...]


def build_gateway(index: ProtoIndex, app: App, containers: Containers) -> Gateway:
    """The gateway of a validated app; raises MeshgenError on an rpc name clash."""
    compiled = index.compiled
    main = compiled.file(compiled.main)
    refs = MessageRefs(main.package)
    server = index.top_level_message(containers.server_message)
    client = index.top_level_message(containers.client_message)
    assert server is not None and client is not None  # build_app checked them
    server_fields = {f.name: f.type_name for f in server.proto.field}
    client_fields = {f.name: f.type_name for f in client.proto.field}
    calls = []
    for call in app.downstream.calls:
        payload = server_fields[f"{call.prefix}Request"]
        response = client_fields[f"{call.prefix}Response"]
        rpc = pascal_case(call.prefix)
        calls.append(
            GatewayRpc(
                rpc=rpc,
                method=snake(rpc),
                key=call.prefix,
                message=f"{rpc}GatewayRequest",
                payload_type=payload,
                response_type=response,
                response=refs.ref(index.messages[response]),
                server_method=f"invoke_{call.snake}",
                doc=call.doc,
            )
        )
    broadcasts = []
    container = index.top_level_message(containers.broadcasts)
    types = {f.name: f.type_name for f in container.proto.field} if container else {}
    for broadcast in app.broadcasts:
        payload = types[broadcast.type]
        rpc = f"Broadcast{pascal_case(broadcast.type)}"
        broadcasts.append(
            GatewayRpc(
                rpc=rpc,
                method=snake(rpc),
                key=broadcast.type,
                message=f"{pascal_case(broadcast.type)}BroadcastRequest",
                payload_type=payload,
                response_type="",
                response=None,
                server_method=f"broadcast_{broadcast.snake}",
                doc=broadcast.doc,
            )
        )
    _check_rpc_names(compiled, [*calls, *broadcasts])
    meta_info = index.top_level_message(containers.client_meta) if app.client_meta else None
    package = f"{main.package}.gateway" if main.package else "gateway"
    taken = {file.package for file in compiled.descriptor_set.file}
    if package in taken:
        where = index.main_file_source()
        raise MeshgenError(
            [Problem(where.file, where.line, f"the gateway's package {package!r} is taken")]
        )
    return Gateway(
        name=app.name,
        stem=app.stem,
        app_proto=compiled.main,
        proto_name=f"{app.stem}_gateway.proto",
        package=package,
        module="." + package,
        calls=tuple(calls),
        broadcasts=tuple(broadcasts),
        meta_type=meta_info.full_name if meta_info else ".google.protobuf.Struct",
        meta=refs.ref(meta_info) if meta_info else None,
        message_imports=refs.imports(),
    )


def _check_rpc_names(compiled: CompiledProto, rpcs: list[GatewayRpc]) -> None:
    seen: dict[str, str] = {name: name for name in _FIXED_RPCS}
    problems = []
    for rpc in rpcs:
        for name in (rpc.rpc, rpc.method):
            if name in seen and seen[name] != rpc.key:
                problems.append(
                    Problem(
                        compiled.display_name(compiled.main),
                        0,
                        f"{rpc.key} and {seen[name]} both become the gateway rpc {name}",
                        rpc.key,
                    )
                )
            seen[name] = rpc.key
    if problems:
        raise MeshgenError(problems)


def generate_gateway(
    gateway: Gateway, proto: str, include_dirs: tuple[str, ...], source: str
) -> dict[str, str]:
    """The gateway's files: relative path → content (Python files without the header)."""
    env = environment()
    proto_text = env.get_template("gateway.proto.j2").render(
        gateway=gateway, version=__version__, source=source
    )
    own = os.path.dirname(proto) or "."
    dirs = [*include_dirs]
    if own not in dirs:
        dirs.append(own)
    with tempfile.TemporaryDirectory(prefix="meshgen-gateway-") as tmp:
        path = os.path.join(tmp, gateway.proto_name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(proto_text)
        compiled = compile_proto(path, dirs)
    files = {
        name: text
        for name, text in generate_messages(compiled, _GRPCLIB_PARAMETER).items()
        if name not in ("py.typed", "message_pool.py")
    }
    code = env.get_template("gateway.py.j2").render(gateway=gateway)
    files[f"{gateway.stem}_gateway.py"] = format_python(code, f"{gateway.stem}_gateway.py")
    files[gateway.proto_name] = proto_text
    return files
