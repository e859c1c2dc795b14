"""How each ClientMeta field's ``m--<name>`` text becomes the value its TypedDict declares.

The generated module hands the server a ``ClientMetaSchema`` built from this table, so
that the SRPC runtime stays app-agnostic. Strings (and the well-known types whose JSON
form is a string) need no conversion and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from .protoindex import MessageInfo, ProtoIndex

_F = descriptor_pb2.FieldDescriptorProto

_INTEGERS = frozenset(
    {
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
    }
)
_SCALAR_CONVERTERS: dict[int, str] = {
    _F.TYPE_DOUBLE: "meta_float",
    _F.TYPE_FLOAT: "meta_float",
    _F.TYPE_BOOL: "meta_bool",
    **{t: "meta_int" for t in _INTEGERS},
}
# Well-known messages by their JSON form; absent ones (Timestamp, ...) are strings.
_WELL_KNOWN_CONVERTERS: dict[str, str] = {
    ".google.protobuf.Struct": "meta_json_object",
    ".google.protobuf.Any": "meta_json_object",
    ".google.protobuf.Empty": "meta_json_object",
    ".google.protobuf.ListValue": "meta_json_list",
    ".google.protobuf.DoubleValue": "meta_float",
    ".google.protobuf.FloatValue": "meta_float",
    ".google.protobuf.Int64Value": "meta_int",
    ".google.protobuf.UInt64Value": "meta_int",
    ".google.protobuf.Int32Value": "meta_int",
    ".google.protobuf.UInt32Value": "meta_int",
    ".google.protobuf.BoolValue": "meta_bool",
}
_STRING_WELL_KNOWN = frozenset(
    {
        ".google.protobuf.Timestamp",
        ".google.protobuf.Duration",
        ".google.protobuf.FieldMask",
        ".google.protobuf.StringValue",
        ".google.protobuf.BytesValue",
        ".google.protobuf.Value",  # any JSON: kept as the text it came as
    }
)


@dataclass(frozen=True)
class MetaField:
    """One ClientMeta key that needs converting, and the expression of its converter."""

    name: str  # the proto JSON name, as in the query: m--<name>
    converter: str  # e.g. "meta_int" or 'meta_enum("A", "B")'


def meta_fields(index: ProtoIndex, message: MessageInfo) -> tuple[MetaField, ...]:
    """The ClientMeta keys whose text converts to another type, in field order."""
    fields = []
    for f in message.proto.field:
        converter = _converter(index, f)
        if converter is not None:
            fields.append(MetaField(f.json_name or f.name, converter))
    return tuple(fields)


def converter_names(fields: tuple[MetaField, ...]) -> tuple[str, ...]:
    """The runtime helpers the converters use (to import them)."""
    return tuple(sorted({f.converter.split("(")[0] for f in fields}))


def _converter(index: ProtoIndex, f: descriptor_pb2.FieldDescriptorProto) -> str | None:
    if f.type == _F.TYPE_MESSAGE and index.messages[f.type_name].is_map_entry:
        return "meta_json_object"
    if f.label == _F.LABEL_REPEATED:
        return "meta_json_list"
    if f.type == _F.TYPE_ENUM:
        if f.type_name == ".google.protobuf.NullValue" or f.type_name not in index.enums:
            return None
        names = ", ".join(f'"{v}"' for v in index.enums[f.type_name].values)
        return f"meta_enum({names})"
    if f.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
        if f.type_name in _STRING_WELL_KNOWN:
            return None
        return _WELL_KNOWN_CONVERTERS.get(f.type_name, "meta_json_object")
    return _SCALAR_CONVERTERS.get(f.type)
