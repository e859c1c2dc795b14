"""One meshgen run in memory: proto → every output file (path → text); nothing is written here."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field

from betterproto2_compiler.casing import pascal_case

from .descriptors import compile_proto
from .gateway import build_gateway, generate_gateway
from .messages import generate_messages
from .model import App, Containers, build_app
from .problems import MeshgenError, Problem
from .protoindex import ProtoIndex
from .render import render_app, render_header


@dataclass(frozen=True)
class Request:
    """What to generate: the command line, as data."""

    proto: str
    include_dirs: tuple[str, ...] = ()
    name: str | None = None
    containers: Containers = field(default_factory=Containers)
    gateway: bool = False  # also the gRPC gateway (meshgen --gateway)


def module_stem(proto: str) -> str:
    """`apps/my-app.proto` → `my_app`: the output module is `<stem>_srpc.py`."""
    stem = os.path.splitext(os.path.basename(proto))[0]
    stem = re.sub(r"\W", "_", stem)
    return f"_{stem}" if stem[:1].isdigit() else stem


def source_label(proto: str) -> str:
    """The proto as the header names it: relative, '/'-separated, never absolute."""
    path = proto
    if os.path.isabs(path):
        try:
            path = os.path.relpath(path)
        except ValueError:  # another drive on Windows
            path = os.path.basename(path)
    return os.path.normpath(path).replace(os.sep, "/")


@dataclass(frozen=True)
class Generated:
    """One run's output files (path → content, sorted) and the app they describe."""

    files: dict[str, str]
    app: App

    def summary(self, written: int, out_dir: str) -> str:
        """The one line meshgen prints on success."""
        app = self.app
        up, down = len(app.upstream.calls), len(app.downstream.calls)
        unchanged = len(self.files) - written
        return (
            f"meshgen: wrote {written} file(s) to {out_dir} ({unchanged} unchanged): "
            f"{app.stem}_srpc.py with {up + down} call(s) ({up} upstream, {down} downstream), "
            f"{len(app.broadcasts)} broadcast(s)"
            + (f", client metadata {app.client_meta}" if app.client_meta else "")
        )


def generate(request: Request) -> dict[str, str]:
    """Every output file, relative '/'-separated path → content, sorted by path."""
    return build(request).files


def build(request: Request) -> Generated:
    """Every output file and the app model, or MeshgenError."""
    stem = module_stem(request.proto)
    name = request.name or pascal_case(stem)
    if not name.isidentifier():
        raise MeshgenError([Problem(request.proto, 0, f"--name {name!r} is not a Python name")])
    compiled = compile_proto(request.proto, request.include_dirs)
    source = source_label(request.proto)
    index = ProtoIndex(compiled)
    app = build_app(index, source=source, stem=stem, name=name, containers=request.containers)
    files = {path: text for path, text in generate_messages(compiled).items() if path != "py.typed"}
    files[f"{stem}_srpc.py"] = render_app(app, gateway=request.gateway)
    if request.gateway:
        gateway = build_gateway(index, app, request.containers)
        files.update(generate_gateway(gateway, request.proto, request.include_dirs, source))
    # Every folder holding Python is a package, and the root is typed (PEP 561).
    for path in list(files):
        folder = posixpath.dirname(path)
        while True:
            files.setdefault(posixpath.join(folder, "__init__.py"), "")
            if not folder:
                break
            folder = posixpath.dirname(folder)
    header = render_header(source)
    for path, text in files.items():
        if path.endswith(".py"):  # the gateway's .proto carries its own
            files[path] = header + ("\n" + text if text else "")
    files["py.typed"] = ""
    return Generated(dict(sorted(files.items())), app)
