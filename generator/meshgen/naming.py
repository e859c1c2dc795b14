"""The Python names of the generated module: message imports, their aliases, snake_case."""

from __future__ import annotations

from dataclasses import dataclass

from betterproto2_compiler.casing import snake_case

from .protoindex import MessageInfo


@dataclass(frozen=True)
class MessageRef:
    """A betterproto2 class as the generated module refers to it."""

    local_name: str  # the name inside <stem>_srpc.py
    class_name: str  # the name in its own module
    module: str  # relative module, e.g. ".sgnl24.TestRpc"


@dataclass(frozen=True)
class ImportFrom:
    """`from <module> import <names>` in the generated module."""

    module: str
    names: tuple[str, ...]  # "X" or "X as Y"


def snake(name: str) -> str:
    """`uRequestData` → `u_request_data`, as method names use it."""
    return snake_case(name).lower()


# Names the generated module defines or imports itself; messages are aliased around them.
RESERVED = {
    "Any",
    "Awaitable",
    "Callable",
    "Literal",
    "Mapping",
    "MeshSrpcServer",
    "RegisteredClient",
    "Never",
    "NotRequired",
    "SrpcClient",
    "SrpcServer",
    "SrpcStream",
    "TypeVar",
    "TypedDict",
    "annotations",
    "betterproto2",
    "overload",
}


class MessageRefs:
    """Assigns each used message class a unique local name and collects the imports."""

    def __init__(self, main_package: str) -> None:
        self.main_package = main_package
        self.by_full_name: dict[str, MessageRef] = {}

    def ref(self, message: MessageInfo) -> MessageRef:
        """The reference to a message class, with a local name unique in the module."""
        if message.full_name in self.by_full_name:
            return self.by_full_name[message.full_name]
        module = "." + message.package if message.package else "."
        local = message.py_name
        taken = {r.local_name for r in self.by_full_name.values()}
        if local in taken or local in RESERVED or local.startswith("_"):
            package = "".join(p[:1].upper() + p[1:] for p in message.package.split("."))
            local = f"{package}{message.py_name}"
            while local in taken or local in RESERVED:
                local = f"{local}_"
        ref = MessageRef(local, message.py_name, module)
        self.by_full_name[message.full_name] = ref
        return ref

    def imports(self) -> tuple[ImportFrom, ...]:
        """One `from … import …` per module, sorted."""
        modules: dict[str, list[str]] = {}
        for ref in self.by_full_name.values():
            name = ref.class_name
            if ref.local_name != ref.class_name:
                name = f"{ref.class_name} as {ref.local_name}"
            modules.setdefault(ref.module, []).append(name)
        return tuple(
            ImportFrom(module, tuple(sorted(set(names))))
            for module, names in sorted(modules.items())
        )
