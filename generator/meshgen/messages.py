"""The message classes: betterproto2's compiler, in-process, its output made mypy --strict clean."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import types
from collections.abc import Iterator
from typing import Any

from betterproto2_compiler.lib.google.protobuf import FileDescriptorSet
from betterproto2_compiler.lib.google.protobuf.compiler import CodeGeneratorRequest
from betterproto2_compiler.plugin import compiler as betterproto2_compiler_module
from betterproto2_compiler.plugin.parser import generate_code

from .descriptors import CompiledProto
from .formatting import ruff_binary

# Only messages: SRPC apps have no gRPC services, and a stub would drag in grpclib.
_PLUGIN_PARAMETER = "client_generation=none,server_generation=none"

_MESSAGE_POOL = """\
import typing

import betterproto2

# betterproto2.MessagePool.__init__ is unannotated; the cast keeps mypy --strict quiet
# with no ignore comment.
default_message_pool = typing.cast(
    typing.Callable[[], betterproto2.MessagePool], betterproto2.MessagePool
)()
"""


def generate_messages(
    compiled: CompiledProto, parameter: str = _PLUGIN_PARAMETER
) -> dict[str, str]:
    """Output path (relative, '/'-separated) → content of every betterproto2 file."""
    descriptor_set = FileDescriptorSet.parse(compiled.serialized)
    request = CodeGeneratorRequest(
        file_to_generate=[compiled.main],
        parameter=parameter,
        proto_file=list(descriptor_set.file),
    )
    with _isolated_ruff(), contextlib.redirect_stderr(io.StringIO()):
        response = generate_code(request)
    files: dict[str, str] = {}
    for file in response.file:
        name = str(file.name)
        files[name] = _make_strict(name, str(file.content or ""))
    return files


def _make_strict(name: str, content: str) -> str:
    """Fix the few spots of betterproto2 0.10's output that mypy --strict rejects."""
    if name == "message_pool.py":
        return _MESSAGE_POOL
    if not name.endswith(".py"):
        return content
    # Hand-written methods of the well-known types leave some parameters unannotated.
    content = content.replace(
        "def from_dict(cls, value, *", "def from_dict(cls, value: typing.Any, *"
    )
    content = content.replace("(self, **kwargs) ->", "(self, **kwargs: typing.Any) ->")
    # A pyright-only ignore that mypy flags as unused under --strict.
    content = re.sub(r"  # type: ignore\[report\w+\]", "", content)
    # mypy misreads `int(num) | float(num)` as binding different names.
    content = content.replace(
        "case Value(number_value=int(num)) | Value(number_value=float(num)):",
        "case Value(number_value=int() | float() as num):",
    )
    if "typing.Any" in content and not re.search(r"^import typing$", content, re.MULTILINE):
        content = content.replace(
            "\nimport betterproto2\n", "\nimport typing\n\nimport betterproto2\n", 1
        )
    return content


@contextlib.contextmanager
def _isolated_ruff() -> Iterator[None]:
    # betterproto2 formats its output by running `ruff` from PATH, which picks up
    # whatever ruff configuration the current folder has: the bytes would depend on
    # where meshgen runs. Point those calls at our ruff, with --isolated.
    namespace = vars(betterproto2_compiler_module)
    original = namespace["subprocess"]
    binary = ruff_binary()

    def check_output(args: list[str], **kwargs: Any) -> Any:
        if args and args[0] == "ruff":
            args = [binary, args[1], "--isolated", *args[2:]]
        return subprocess.check_output(args, **kwargs)

    shim = types.SimpleNamespace(
        check_output=check_output, CalledProcessError=subprocess.CalledProcessError
    )
    namespace["subprocess"] = shim
    try:
        yield
    finally:
        namespace["subprocess"] = original
