"""TypedDicts for data that travels as plain JSON (broadcast payloads, client metadata).

The shape is protobuf's canonical JSON, as the TypeScript side (ts-proto) writes it:
lowerCamelCase keys, enums by value name, bytes as base64, 64-bit integers as numbers.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

from .protoindex import MessageInfo, ProtoIndex, doc_lines

_F = descriptor_pb2.FieldDescriptorProto

_SCALARS: dict[int, str] = {
    _F.TYPE_DOUBLE: "float",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "str",
    _F.TYPE_BYTES: "str",  # base64
    **{
        t: "int"
        for t in (
            _F.TYPE_INT32,
            _F.TYPE_INT64,
            _F.TYPE_UINT32,
            _F.TYPE_UINT64,
            _F.TYPE_SINT32,
            _F.TYPE_SINT64,
            _F.TYPE_FIXED32,
            _F.TYPE_FIXED64,
            _F.TYPE_SFIXED32,
            _F.TYPE_SFIXED64,
        )
    },
}

# Well-known types have their own JSON forms (RFC 3339 strings, bare values, ...).
_WELL_KNOWN: dict[str, str] = {
    ".google.protobuf.Timestamp": "str",
    ".google.protobuf.Duration": "str",
    ".google.protobuf.FieldMask": "str",
    ".google.protobuf.Struct": "dict[str, Any]",
    ".google.protobuf.Value": "Any",
    ".google.protobuf.ListValue": "list[Any]",
    ".google.protobuf.Any": "dict[str, Any]",
    ".google.protobuf.Empty": "dict[str, Any]",
    ".google.protobuf.DoubleValue": "float | None",
    ".google.protobuf.FloatValue": "float | None",
    ".google.protobuf.Int64Value": "int | None",
    ".google.protobuf.UInt64Value": "int | None",
    ".google.protobuf.Int32Value": "int | None",
    ".google.protobuf.UInt32Value": "int | None",
    ".google.protobuf.BoolValue": "bool | None",
    ".google.protobuf.StringValue": "str | None",
    ".google.protobuf.BytesValue": "str | None",
}
_WELL_KNOWN_ENUMS: dict[str, str] = {".google.protobuf.NullValue": "None"}


@dataclass(frozen=True)
class DictKey:
    """One key of a TypedDict."""

    name: str  # the proto JSON name
    annotation: str  # e.g. "NotRequired[list[LobbyDict]]"
    comment: tuple[str, ...] = ()  # lines of the field's proto comment


@dataclass(frozen=True)
class TypedDictSpec:
    """A TypedDict to render: class syntax unless a key is a Python keyword."""

    name: str
    message: str  # the proto message's name
    doc: tuple[str, ...]
    keys: tuple[DictKey, ...]
    functional: bool = False


@dataclass
class TypedDictBuilder:
    """Builds the TypedDicts for some messages and, transitively, the messages they use."""

    index: ProtoIndex
    specs: dict[str, TypedDictSpec] = field(default_factory=dict)  # full name → spec
    names: dict[str, str] = field(default_factory=dict)  # full name → Dict name
    uses_any: bool = False
    uses_not_required: bool = False
    uses_literal: bool = False

    def dict_name(self, message: MessageInfo) -> str:
        """`LobbyClosed` → `LobbyClosedDict`; qualified by package if two would clash."""
        if message.full_name not in self.names:
            name = f"{message.py_name}Dict"
            if name in self.names.values():
                package = "".join(p[:1].upper() + p[1:] for p in message.package.split("."))
                name = f"{package}{message.py_name}Dict"
            self.names[message.full_name] = name
        return self.names[message.full_name]

    def add(self, message: MessageInfo, *, all_optional: bool = False) -> str:
        """Make sure a TypedDict exists for this message (and what it uses); return its name.

        ``all_optional`` makes every key ``NotRequired`` (client metadata: any client,
        TypeScript ones too, may leave any key out).
        """
        name = self.dict_name(message)
        if message.full_name in self.specs:
            return name
        # Reserve first: recursive messages refer to themselves by name.
        self.specs[message.full_name] = TypedDictSpec(name, _local_name(message), (), ())
        keys = tuple(
            self._key(message, i, f, all_optional) for i, f in enumerate(message.proto.field)
        )
        doc = doc_lines(self.index.message_source(message).comment)
        functional = any(keyword.iskeyword(k.name) or not k.name.isidentifier() for k in keys)
        if functional:
            keys = tuple(self._runtime_safe(key) for key in keys)
        # Re-insert so that the spec comes after every dict it uses (definition order).
        del self.specs[message.full_name]
        self.specs[message.full_name] = TypedDictSpec(
            name, _local_name(message), doc, keys, functional
        )
        return name

    def add_update(self, message: MessageInfo) -> str:
        """A partial TypedDict for merging into a message's dict: ``None`` deletes a key.

        Named ``<Message>UpdateDict``; call after :meth:`add` for the same message.
        """
        base = self.specs[message.full_name]
        name = base.name.removesuffix("Dict") + "UpdateDict"
        keys = []
        for key in base.keys:
            value = key.annotation.removeprefix("NotRequired[").removesuffix("]")
            if not value.endswith("| None"):
                value = f"{value} | None"
            # ReadOnly: a full ClientMetaDict is a valid update too (mypy lets a read-only
            # `int | None` key accept an `int`, a mutable one would not).
            keys.append(DictKey(key.name, f"NotRequired[ReadOnly[{value}]]", key.comment))
        doc = (f"A partial {base.name} to merge: a key set to None is deleted.",)
        self.specs[f"{message.full_name}#update"] = TypedDictSpec(
            name, base.message, doc, tuple(keys), base.functional
        )
        return name

    def _runtime_safe(self, key: DictKey) -> DictKey:
        # The functional syntax evaluates its annotations at import time: a dict that is
        # not defined yet (recursion) must be a quoted forward reference.
        pending = [spec.name for spec in self.specs.values() if not spec.keys]
        annotation = key.annotation
        for name in pending:
            annotation = re.sub(rf"\b{name}\b", f'"{name}"', annotation)
        return DictKey(key.name, annotation, key.comment)

    def ordered(self) -> list[TypedDictSpec]:
        """The specs, each after the ones it refers to (except for recursion)."""
        return list(self.specs.values())

    def _key(
        self,
        message: MessageInfo,
        index: int,
        f: descriptor_pb2.FieldDescriptorProto,
        optional: bool = False,
    ) -> DictKey:
        annotation = self._value_type(f)
        in_real_oneof = f.HasField("oneof_index") and not f.proto3_optional
        if optional or f.proto3_optional or in_real_oneof:
            self.uses_not_required = True
            annotation = f"NotRequired[{annotation}]"
        comment = self.index.field_source(message, index).comment
        json_name = f.json_name or _lower_camel(f.name)
        return DictKey(json_name, annotation, tuple(comment.splitlines()) if comment else ())

    def _value_type(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        if f.type == _F.TYPE_MESSAGE:
            target = self.index.messages[f.type_name]
            if target.is_map_entry:
                value = self._single_type(target.proto.field[1])
                return f"dict[str, {value}]"
        single = self._single_type(f)
        return f"list[{single}]" if f.label == _F.LABEL_REPEATED else single

    def _single_type(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        if f.type == _F.TYPE_ENUM:
            if f.type_name in _WELL_KNOWN_ENUMS:
                return _WELL_KNOWN_ENUMS[f.type_name]
            self.uses_literal = True
            values = ", ".join(f'"{v}"' for v in self.index.enums[f.type_name].values)
            return f"Literal[{values}]"
        if f.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            if f.type_name in _WELL_KNOWN:
                annotation = _WELL_KNOWN[f.type_name]
                self.uses_any = self.uses_any or "Any" in annotation
                return annotation
            return self.add(self.index.messages[f.type_name])
        return _SCALARS[f.type]


def _local_name(message: MessageInfo) -> str:
    """The message's name inside its package, e.g. `Table.Seat`."""
    scope = f".{message.package}." if message.package else "."
    return message.full_name.removeprefix(scope)


def _lower_camel(name: str) -> str:
    # protoc's json_name rule: drop underscores, capitalise the letter after each.
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
