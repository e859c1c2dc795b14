"""Compile a .proto into a FileDescriptorSet with the protoc that grpcio-tools ships."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from .problems import MeshgenError, Problem

# protoc reports `file:line:col: message`; anything else is a whole-file problem.
_PROTOC_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)$")


@dataclass(frozen=True)
class CompiledProto:
    """A compiled proto: its descriptors (with imports and comments) and how to name its files."""

    main: str
    """The proto's name as protoc sees it (relative to its include dir)."""
    descriptor_set: descriptor_pb2.FileDescriptorSet
    serialized: bytes
    display_names: dict[str, str] = field(default_factory=dict)
    """protoc name → the path to show in messages (relative, as the user gave it)."""

    def file(self, name: str) -> descriptor_pb2.FileDescriptorProto:
        """The descriptor of one compiled file, by its protoc name."""
        for proto in self.descriptor_set.file:
            if proto.name == name:
                return proto
        raise KeyError(name)

    def display_name(self, name: str) -> str:
        """The path to show the user for a protoc file name."""
        return self.display_names.get(name, name)


def well_known_types_dir() -> str:
    """The folder holding google/protobuf/*.proto, shipped inside grpcio-tools."""
    return str(importlib.resources.files("grpc_tools") / "_proto")


def include_dirs_for(proto: str, include_dirs: Sequence[str]) -> list[str]:
    """The user's -I dirs, then the proto's own folder, then the well-known types."""
    own = os.path.dirname(proto) or "."
    dirs = [*include_dirs]
    if own not in dirs:
        dirs.append(own)
    return [*dirs, well_known_types_dir()]


def compile_proto(proto: str, include_dirs: Sequence[str] = ()) -> CompiledProto:
    """Run protoc in-process; a compile error becomes a MeshgenError naming file:line."""
    if not os.path.isfile(proto):
        raise MeshgenError([Problem(proto, 0, "no such proto file")])
    dirs = include_dirs_for(proto, include_dirs)
    search = _protoc_dirs(dirs)
    main = _virtual_name(proto, search)
    with tempfile.TemporaryDirectory(prefix="meshgen-") as tmp:
        out = os.path.join(tmp, "descriptors.pb")
        args = [
            "protoc",
            *(f"-I{d}" for d in search),
            f"--descriptor_set_out={out}",
            "--include_source_info",
            "--include_imports",
            # protoc matches the input to an -I folder by its spelling: `app.proto`
            # with `-I "$PWD"` would be "shadowed" by itself. Real paths on both sides
            # make every spelling of the same folder work.
            os.path.realpath(proto),
        ]
        with _captured_stderr() as captured:
            code = protoc.main(args)
        if code != 0 or not os.path.exists(out):
            raise MeshgenError(_protoc_problems(captured.text, proto, main, dirs))
        serialized = Path(out).read_bytes()
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(serialized)
    display = {main: proto}
    for file in descriptor_set.file:
        if file.name != main:
            display[file.name] = _display_path(file.name, dirs)
    return CompiledProto(main, descriptor_set, serialized, display)


def _protoc_dirs(dirs: Sequence[str]) -> list[str]:
    """The include dirs as real paths, each once, in order."""
    seen: list[str] = []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.append(real)
    return seen


def _virtual_name(proto: str, dirs: Sequence[str]) -> str:
    # protoc names a file relative to the first include dir that contains it.
    real = os.path.realpath(proto)
    for d in dirs:
        base = os.path.realpath(d)
        if real.startswith(base + os.sep):
            return os.path.relpath(real, base).replace(os.sep, "/")
    return os.path.basename(proto)


def _display_path(name: str, dirs: Sequence[str]) -> str:
    for d in dirs[:-1]:  # the last dir is the well-known types: keep their short names
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    return name


def _protoc_problems(stderr: str, proto: str, main: str, dirs: Sequence[str]) -> list[Problem]:
    problems = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line or line.startswith("warning:"):
            continue
        match = _PROTOC_LOCATED.match(line)
        if match:
            name = proto if match["file"] == main else _display_path(match["file"], dirs)
            problems.append(Problem(name, int(match["line"]), match["message"].strip()))
        else:
            problems.append(Problem(proto, 0, line))
    return problems or [Problem(proto, 0, "protoc failed without a message")]


class _Captured:
    text = ""


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    # protoc is C++ and writes straight to file descriptor 2, past sys.stderr,
    # so the descriptor itself is pointed at a temporary file for the call.
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
