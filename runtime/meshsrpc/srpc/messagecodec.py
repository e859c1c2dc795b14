"""A faster binary codec for the simple betterproto2 messages a frame carries.

betterproto2 parses through a BytesIO, a generator and one dataclass per field, and
encodes through a BytesIO with a default-factory call per field: for a request or
response of a few scalar fields that is most of a frame's decode and encode time.
Message classes whose fields are all singular scalars, enums, strings, bytes or
messages get a table-driven codec here that builds the same objects and writes the
same bytes. Every other class, and any input or value the tables do not cover (a
known field with another wire type, a field holding an unexpected type), goes
through betterproto2 itself, so the results and the errors stay the same.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from typing import Any, Final

import betterproto2

from .protowire import (
    WIRE_I32,
    WIRE_I64,
    WIRE_LEN,
    WIRE_VARINT,
    FrameError,
    VarintOverflow,
    check_wire_structure,
    encode_varint,
    proto_meta,
    read_varint,
    wire_type_mismatch,
    wire_type_of,
)

__all__ = ["check_encoded", "encode_message", "parse_message"]

_MAX_DEPTH: Final = 64  # the limit check_wire_structure applies

_KIND_VARINT: Final = 0
_KIND_FIXED: Final = 1
_KIND_STRING: Final = 2
_KIND_BYTES: Final = 3
_KIND_MESSAGE: Final = 4


def _signed(bits: int) -> Callable[[int], int]:
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)

    def convert(value: int) -> int:
        return ((value & mask) ^ sign) - sign

    return convert


def _unsigned(bits: int) -> Callable[[int], int]:
    mask = (1 << bits) - 1

    def convert(value: int) -> int:
        return value & mask

    return convert


def _zigzag(bits: int) -> Callable[[int], int]:
    mask = (1 << bits) - 1

    def convert(value: int) -> int:
        value &= mask
        return (value >> 1) ^ (-(value & 1))

    return convert


def _to_bool(value: int) -> bool:
    return value > 0


# proto type -> how betterproto2 turns a received varint into the field's value.
_VARINT_DECODERS: Final[dict[str, Callable[[int], Any]]] = {
    betterproto2.TYPE_INT32: _signed(32),
    betterproto2.TYPE_INT64: _signed(64),
    betterproto2.TYPE_UINT32: _unsigned(32),
    betterproto2.TYPE_UINT64: _unsigned(64),
    betterproto2.TYPE_SINT32: _zigzag(32),
    betterproto2.TYPE_SINT64: _zigzag(64),
    betterproto2.TYPE_BOOL: _to_bool,
}
_ZIGZAG_TYPES: Final = (betterproto2.TYPE_SINT32, betterproto2.TYPE_SINT64)
# proto type -> (struct format, wire type).
_FIXED: Final[dict[str, str]] = {  # struct formats
    betterproto2.TYPE_DOUBLE: "<d",
    betterproto2.TYPE_FIXED64: "<Q",
    betterproto2.TYPE_SFIXED64: "<q",
    betterproto2.TYPE_FLOAT: "<f",
    betterproto2.TYPE_FIXED32: "<I",
    betterproto2.TYPE_SFIXED32: "<i",
}


class _OutOfRange(ValueError):
    """An integer no 64-bit field can hold (betterproto2 would write it anyway)."""


def _varint_bytes(value: int) -> bytes:
    # betterproto2's dump_varint, value for value (booleans and enums included),
    # except that it refuses what betterproto2 writes as an over-long varint.
    if value < -(1 << 63):
        raise ValueError("Negative value is not representable as a 64-bit integer")
    if value < 0:
        value += 1 << 64
    elif value >> 64:
        raise _OutOfRange(f"{value} is not representable as a 64-bit integer")
    return encode_varint(value)


class _Field:
    """One field of a simple message: what is read and written for it."""

    __slots__ = (
        "convert",
        "default",
        "key",
        "kind",
        "name",
        "number",
        "sub_cls",
        "wire_type",
        "zigzag",
    )

    def __init__(self, cls: type[betterproto2.Message], name: str) -> None:
        meta = proto_meta(cls)
        field_meta = meta.meta_by_field_name[name]
        proto_type = field_meta.proto_type
        self.name = name
        self.number: int = field_meta.number
        self.sub_cls: type[betterproto2.Message] | None = None
        self.convert: Callable[[Any], Any] | str | None = None
        with warnings.catch_warnings():
            # as betterproto2 does when it builds a deprecated field's default
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            self.default: Any = meta.default_gen[name]()
        if proto_type in _VARINT_DECODERS:
            self.kind = _KIND_VARINT
            self.convert = _VARINT_DECODERS[proto_type]
        elif proto_type == betterproto2.TYPE_ENUM:
            self.kind = _KIND_VARINT
            self.convert = _enum_decoder(meta.cls_by_field[name])
        elif proto_type in _FIXED:
            self.kind = _KIND_FIXED
            self.convert = _FIXED[proto_type]
        elif proto_type == betterproto2.TYPE_STRING:
            self.kind = _KIND_STRING
        elif proto_type == betterproto2.TYPE_BYTES:
            self.kind = _KIND_BYTES
        elif proto_type == betterproto2.TYPE_MESSAGE:
            self.kind = _KIND_MESSAGE
            self.sub_cls = meta.cls_by_field[name]
        else:  # pragma: no cover - _supported() rules these out
            raise TypeError(proto_type)
        wire_type = wire_type_of(proto_type)
        assert wire_type is not None  # every type above has one
        self.wire_type: int = wire_type
        self.key = encode_varint(self.number << 3 | self.wire_type)
        self.zigzag = proto_type in _ZIGZAG_TYPES


def _enum_decoder(enum_cls: Any) -> Callable[[int], Any]:
    to_int64 = _signed(64)

    def convert(value: int) -> Any:
        return enum_cls(to_int64(value))

    return convert


def _supported(cls: type[betterproto2.Message]) -> bool:
    """True if every field of ``cls`` is one the tables handle exactly like betterproto2."""
    base = betterproto2.Message
    for method in ("__bytes__", "load", "parse", "_postprocess_single", "__post_init__"):
        owner = next(c for c in cls.__mro__ if method in c.__dict__)
        if owner is not base:
            return False
    probe: Any = cls
    try:
        if probe.__new__(cls)._is_pydantic():
            return False
    except Exception:
        return False
    meta = proto_meta(cls)
    for field_meta in meta.meta_by_field_name.values():
        if field_meta.repeated or field_meta.map_meta or field_meta.unwrap is not None:
            return False
        proto_type = field_meta.proto_type
        if proto_type == betterproto2.TYPE_MESSAGE:
            sub_cls = meta.cls_by_field.get(_name_of(meta, field_meta.number))
            if not (isinstance(sub_cls, type) and issubclass(sub_cls, base)):
                return False
        elif (
            proto_type not in _VARINT_DECODERS
            and proto_type not in _FIXED
            and proto_type
            not in (
                betterproto2.TYPE_ENUM,
                betterproto2.TYPE_STRING,
                betterproto2.TYPE_BYTES,
            )
        ):
            return False
    return True


def _name_of(meta: betterproto2.ProtoClassMetadata, number: int) -> str:
    return meta.field_name_by_number[number]


class _Codec:
    """Parser and encoder for one simple message class."""

    __slots__ = ("by_number", "cls", "fields")

    def __init__(self, cls: type[betterproto2.Message]) -> None:
        self.cls = cls
        # Declaration order: the order betterproto2 writes fields in.
        self.fields = tuple(_Field(cls, name) for name in proto_meta(cls).meta_by_field_name)
        self.by_number = {f.number: f for f in self.fields}

    def parse(self, data: bytes, pos: int, end: int, depth: int) -> betterproto2.Message:
        if depth > _MAX_DEPTH:
            raise FrameError("message nested too deeply")
        by_number = self.by_number
        values: dict[str, Any] = {}
        unknown = b""
        while pos < end:
            field_start = pos
            key = data[pos]
            if key < 0x80:
                pos += 1
            else:
                key, pos = read_varint(data, pos, end)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise FrameError("field number 0")
            if wire_type == WIRE_LEN:
                length = data[pos] if pos < end else 0x80
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = read_varint(data, pos, end)
                value_start, pos = pos, pos + length
                if pos > end:
                    raise FrameError("length-delimited field runs past the end")
            elif wire_type == WIRE_VARINT:
                value_start = pos
                varint, pos = read_varint(data, pos, end)
            elif wire_type in (WIRE_I64, WIRE_I32):
                value_start = pos
                pos += 8 if wire_type == WIRE_I64 else 4
                if pos > end:
                    raise FrameError("field runs past the end")
            else:
                raise FrameError(f"unsupported wire type {wire_type}")
            field = by_number.get(number)
            if field is None:
                unknown += data[field_start:pos]
                continue
            if field.wire_type != wire_type:
                # As check_wire_structure refuses it (betterproto2 would keep the value).
                raise wire_type_mismatch(number, wire_type)
            kind = field.kind
            if kind == _KIND_STRING:
                values[field.name] = str(data[value_start:pos], "utf-8")
            elif kind == _KIND_VARINT:
                convert: Any = field.convert
                values[field.name] = convert(varint)
            elif kind == _KIND_BYTES:
                values[field.name] = data[value_start:pos]
            elif kind == _KIND_MESSAGE:
                sub_cls = field.sub_cls
                assert sub_cls is not None
                values[field.name] = _parse(sub_cls, data, value_start, pos, depth + 1)
            else:
                fmt: Any = field.convert
                values[field.name] = struct.unpack(fmt, data[value_start:pos])[0]
        message = self.cls(**values)
        if unknown:
            message._unknown_fields = unknown
        return message

    def encode(self, message: Any) -> bytes:
        parts: list[bytes] = []
        for field in self.fields:
            value = getattr(message, field.name)
            if value is None or value == field.default:
                continue
            kind = field.kind
            if kind == _KIND_STRING:
                raw = value.encode("utf-8")
                parts += (field.key, encode_varint(len(raw)), raw)
            elif kind == _KIND_VARINT:
                if field.zigzag:
                    value = value << 1 if value >= 0 else (value << 1) ^ (~0)
                parts += (field.key, _varint_bytes(value))
            elif kind == _KIND_MESSAGE:
                raw = encode_message(value)
                parts += (field.key, encode_varint(len(raw)), raw)
            elif kind == _KIND_BYTES:
                parts += (field.key, encode_varint(len(value)), value)
            else:
                fmt: Any = field.convert
                parts += (field.key, struct.pack(fmt, value))
        unknown = message._unknown_fields
        if unknown:
            parts.append(unknown)
        return b"".join(parts)


# Per class: its codec, or None where betterproto2 does the work.
_CODECS: dict[type, _Codec | None] = {}


def _codec(cls: type) -> _Codec | None:
    try:
        return _CODECS[cls]
    except KeyError:
        pass
    codec: _Codec | None = None
    if isinstance(cls, type) and issubclass(cls, betterproto2.Message) and _supported(cls):
        codec = _Codec(cls)
    _CODECS[cls] = codec
    return codec


def _parse(
    cls: type[betterproto2.Message], data: bytes, start: int, end: int, depth: int
) -> betterproto2.Message:
    codec = _codec(cls)
    if codec is None:
        check_wire_structure(data, cls, start, end, depth)
        return cls.parse(data[start:end])
    return codec.parse(data, start, end, depth)


def parse_message(
    cls: type[betterproto2.Message], data: bytes, start: int, end: int, depth: int = 1
) -> betterproto2.Message:
    """Parse ``data[start:end]`` as ``cls``, as a structure check plus ``cls.parse`` would.

    Raises :class:`FrameError` for anything either of them rejects.
    """
    try:
        codec = _CODECS.get(cls)  # the common case without _parse's extra call
        if codec is not None:
            return codec.parse(data, start, end, depth)
        return _parse(cls, data, start, end, depth)
    except FrameError:
        raise
    except Exception as exc:  # betterproto2 raises assorted errors on bad input
        raise FrameError(f"invalid message: {exc}") from exc


def encode_message(message: betterproto2.Message) -> bytes:
    """``bytes(message)``: the same bytes, and the same error for a value it cannot write.

    One difference: an integer ≥ 2**64, which betterproto2 writes as a varint that
    no decoder reads back (the peer would close the connection), raises ValueError.
    """
    codec = _codec(type(message))
    if codec is not None:
        try:
            return codec.encode(message)
        except _OutOfRange:
            raise
        except Exception:
            pass  # betterproto2 below raises (or writes) its own way
    raw = bytes(message)
    check_encoded(raw, type(message))
    return raw


def check_encoded(data: bytes, cls: type[betterproto2.Message]) -> None:
    """Raise ValueError if ``data``, written by betterproto2, holds an integer ≥ 2**64."""
    try:
        check_wire_structure(data, cls, strict=True)
    except VarintOverflow as exc:
        raise ValueError(f"cannot encode {cls.__name__}: {exc}") from None
    except FrameError:
        pass  # a quirk of betterproto2's output (it writes back what it parsed), not ours
