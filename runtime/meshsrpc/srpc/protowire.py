"""Protobuf wire-format primitives for the frame codec: varints and a structure check.

betterproto2 does the real message work; these helpers cover what it does not (it
accepts truncated input) and what is too slow through it on the hot path (the frame
envelope, see ``frames.py``).
"""

from __future__ import annotations

from typing import Any, Final

import betterproto2

from ..errors import FrameError

__all__ = [
    "WIRE_I32",
    "WIRE_I64",
    "WIRE_LEN",
    "WIRE_VARINT",
    "FrameError",
    "VarintOverflow",
    "check_wire_structure",
    "encode_varint",
    "proto_meta",
    "read_varint",
    "wire_type_mismatch",
    "wire_type_of",
]

WIRE_VARINT: Final = 0
WIRE_I64: Final = 1
WIRE_LEN: Final = 2
WIRE_I32: Final = 5
_MAX_DEPTH: Final = 64

# Lengths and tags below 128 are one byte; most frames use nothing else.
_SMALL_VARINTS: Final = tuple(bytes((i,)) for i in range(0x80))


def proto_meta(cls: type[betterproto2.Message]) -> betterproto2.ProtoClassMetadata:
    """betterproto2's per-class field metadata (its ``classproperty`` confuses mypy)."""
    any_cls: Any = cls
    meta: betterproto2.ProtoClassMetadata = any_cls._betterproto
    return meta


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; FrameError on truncation."""
    result = shift = 0
    for i in range(pos, min(pos + 10, end)):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i + 1
        shift += 7
    raise FrameError("truncated or overlong varint")


# Per message class: field number -> (class of a message/map field or None, the wire
# types the field's declared type can come as). betterproto2's metadata lookups cost
# more than the walk itself.
_FieldShape = tuple[type[betterproto2.Message] | None, frozenset[int]]
_MESSAGE_FIELDS: dict[type[betterproto2.Message], dict[int, _FieldShape]] = {}

# The wire type each field type is written in when singular (RFC: protobuf encoding).
_WIRE_TYPES: Final[dict[str, int]] = {
    **dict.fromkeys(
        (
            betterproto2.TYPE_INT32,
            betterproto2.TYPE_INT64,
            betterproto2.TYPE_UINT32,
            betterproto2.TYPE_UINT64,
            betterproto2.TYPE_SINT32,
            betterproto2.TYPE_SINT64,
            betterproto2.TYPE_BOOL,
            betterproto2.TYPE_ENUM,
        ),
        WIRE_VARINT,
    ),
    **dict.fromkeys(
        (betterproto2.TYPE_FIXED32, betterproto2.TYPE_SFIXED32, betterproto2.TYPE_FLOAT),
        WIRE_I32,
    ),
    **dict.fromkeys(
        (betterproto2.TYPE_FIXED64, betterproto2.TYPE_SFIXED64, betterproto2.TYPE_DOUBLE),
        WIRE_I64,
    ),
    **dict.fromkeys(
        (
            betterproto2.TYPE_STRING,
            betterproto2.TYPE_BYTES,
            betterproto2.TYPE_MESSAGE,
            betterproto2.TYPE_MAP,
        ),
        WIRE_LEN,
    ),
}
_ANY_WIRE_TYPE: Final = frozenset({WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32})


def wire_type_of(proto_type: str) -> int | None:
    """The wire type a singular field of ``proto_type`` is written in (None: not known)."""
    return _WIRE_TYPES.get(proto_type)


def wire_type_mismatch(number: int, wire_type: int) -> FrameError:
    """The error for field ``number`` arriving in a wire type its type cannot have."""
    return FrameError(f"field {number}: wire type {wire_type} does not fit its type")


def _wire_types(proto_type: str, repeated: bool) -> frozenset[int]:
    """The wire types a field of ``proto_type`` may arrive as (packed: LEN too)."""
    wire_type = wire_type_of(proto_type)
    if wire_type is None:
        return _ANY_WIRE_TYPE
    return frozenset({wire_type, WIRE_LEN}) if repeated else frozenset({wire_type})


def _message_fields(cls: type[betterproto2.Message]) -> dict[int, _FieldShape]:
    fields = _MESSAGE_FIELDS.get(cls)
    if fields is None:
        meta = proto_meta(cls)
        fields = {}
        for name, field_meta in meta.meta_by_field_name.items():
            sub_cls: Any = None
            if field_meta.proto_type in (betterproto2.TYPE_MESSAGE, betterproto2.TYPE_MAP):
                sub_cls = meta.cls_by_field.get(name)
            is_message = isinstance(sub_cls, type) and issubclass(sub_cls, betterproto2.Message)
            wire_types = _wire_types(field_meta.proto_type, bool(field_meta.repeated))
            fields[field_meta.number] = (sub_cls if is_message else None, wire_types)
        _MESSAGE_FIELDS[cls] = fields
    return fields


class VarintOverflow(FrameError):
    """A varint value over 64 bits (see ``check_wire_structure(strict=True)``)."""


def check_wire_structure(
    data: bytes,
    cls: type[betterproto2.Message] | None,
    start: int = 0,
    end: int | None = None,
    depth: int = 0,
    *,
    strict: bool = False,
) -> None:
    """Walk the protobuf wire structure and raise :class:`FrameError` if it is broken.

    betterproto2 silently accepts truncated input (``0a056d`` parses as
    ``request_id='m'``) where ts-proto throws; walking the tags and lengths, and
    descending into known message fields, restores the TypeScript behaviour.

    A known field in a wire type its type cannot have is refused too. betterproto2
    would keep the value as it came: a varint in a message field becomes an int that
    ``bytes()`` later turns into that many zero bytes (a 10-byte frame asking for
    gigabytes), a varint in a string field an int. ts-proto skips such a field; a
    message of ours refuses the frame (no peer's encoder writes one).
    ``strict`` also refuses varint values over 64 bits, which betterproto2 writes for
    an int ≥ 2**64 and no peer reads back.
    """
    if end is None:
        end = len(data)
    if depth > _MAX_DEPTH:
        raise FrameError("message nested too deeply")
    fields = _message_fields(cls) if cls is not None else None
    pos = start
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        shape = fields.get(number) if fields is not None else None
        if shape is not None and wire_type not in shape[1]:
            raise wire_type_mismatch(number, wire_type)
        if wire_type == WIRE_VARINT:
            value, pos = read_varint(data, pos, end)
            if strict and value >> 64:
                raise VarintOverflow(f"field {number}: {value} does not fit in 64 bits")
        elif wire_type == WIRE_I64:
            pos += 8
        elif wire_type == WIRE_I32:
            pos += 4
        elif wire_type == WIRE_LEN:
            length, pos = read_varint(data, pos, end)
            sub_end = pos + length
            if sub_end > end:
                raise FrameError("length-delimited field runs past the end")
            sub_cls = shape[0] if shape is not None else None
            if sub_cls is not None:
                check_wire_structure(data, sub_cls, pos, sub_end, depth + 1, strict=strict)
            pos = sub_end
        else:
            raise FrameError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise FrameError("field runs past the end")
