"""Every message and enum of a compiled proto, by full name, with its source line and comments."""

from __future__ import annotations

from dataclasses import dataclass

from betterproto2_compiler.compile.naming import pythonize_class_name
from google.protobuf import descriptor_pb2

from .descriptors import CompiledProto

# FileDescriptorProto / DescriptorProto field numbers used in source_code_info paths.
_FILE_MESSAGE = 4
_FILE_ENUM = 5
_FILE_PACKAGE = 2
_MESSAGE_FIELD = 2
_MESSAGE_NESTED = 3
_MESSAGE_ENUM = 4


@dataclass(frozen=True)
class Source:
    """Where a declaration is: the file to show the user, its line, and its comment."""

    file: str
    line: int
    comment: str


@dataclass(frozen=True)
class MessageInfo:
    """A message: its descriptor, package, betterproto2 class name and location."""

    full_name: str  # ".pkg.Outer.Inner"
    package: str
    proto: descriptor_pb2.DescriptorProto
    py_name: str  # betterproto2's class name, e.g. "OuterInner"
    path: tuple[int, ...]
    file: str  # protoc file name

    @property
    def is_map_entry(self) -> bool:
        """Whether protoc synthesised this message for a map field."""
        return self.proto.options.map_entry


@dataclass(frozen=True)
class EnumInfo:
    """An enum and the names of its values, in declaration order."""

    full_name: str
    values: tuple[str, ...]


class ProtoIndex:
    """Look-ups over all files of a CompiledProto."""

    def __init__(self, compiled: CompiledProto) -> None:
        self.compiled = compiled
        self.messages: dict[str, MessageInfo] = {}
        self.enums: dict[str, EnumInfo] = {}
        self._locations: dict[
            tuple[str, tuple[int, ...]], descriptor_pb2.SourceCodeInfo.Location
        ] = {}
        for file in compiled.descriptor_set.file:
            for location in file.source_code_info.location:
                self._locations.setdefault((file.name, tuple(location.path)), location)
            prefix = f".{file.package}" if file.package else ""
            for i, message in enumerate(file.message_type):
                self._add_message(file, message, prefix, "", (_FILE_MESSAGE, i))
            for enum in file.enum_type:
                self._add_enum(enum, prefix)

    def _add_message(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        message: descriptor_pb2.DescriptorProto,
        scope: str,
        outer: str,
        path: tuple[int, ...],
    ) -> None:
        full_name = f"{scope}.{message.name}"
        # betterproto2 flattens nesting: Outer.Inner becomes the class OuterInner.
        prefixed = f"{outer}.{message.name}" if outer else message.name
        self.messages[full_name] = MessageInfo(
            full_name, file.package, message, pythonize_class_name(prefixed), path, file.name
        )
        for i, nested in enumerate(message.nested_type):
            self._add_message(file, nested, full_name, prefixed, (*path, _MESSAGE_NESTED, i))
        for enum in message.enum_type:
            self._add_enum(enum, full_name)

    def _add_enum(self, enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        full_name = f"{scope}.{enum.name}"
        self.enums[full_name] = EnumInfo(full_name, tuple(v.name for v in enum.value))

    def top_level_message(self, name: str) -> MessageInfo | None:
        """A message of the main file by plain name, or any message by (dotted) full name."""
        main = self.compiled.file(self.compiled.main)
        if "." not in name:
            scope = f".{main.package}" if main.package else ""
            return self.messages.get(f"{scope}.{name}")
        return self.messages.get(name if name.startswith(".") else f".{name}")

    def source(self, file: str, path: tuple[int, ...]) -> Source:
        """Line (1-based) and comment of the declaration at a source_code_info path."""
        display = self.compiled.display_name(file)
        location = self._locations.get((file, path))
        if location is None:
            return Source(display, 0, "")
        comment = location.leading_comments or location.trailing_comments
        return Source(display, location.span[0] + 1, _clean_comment(comment))

    def message_source(self, message: MessageInfo) -> Source:
        """Where a message is declared."""
        return self.source(message.file, message.path)

    def field_source(self, message: MessageInfo, index: int) -> Source:
        """Where the index-th field of a message is declared."""
        return self.source(message.file, (*message.path, _MESSAGE_FIELD, index))

    def main_file_source(self) -> Source:
        """The main file, at its package statement (or line 1)."""
        main = self.compiled.main
        found = self.source(main, (_FILE_PACKAGE,))
        return found if found.line else Source(self.compiled.display_name(main), 1, "")


def doc_lines(comment: str) -> tuple[str, ...]:
    """A proto comment as lines that are safe inside a triple-quoted docstring."""
    if not comment:
        return ()
    escaped = comment.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return tuple(escaped.splitlines())


def _clean_comment(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.strip("\n").split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()
