"""The SRPC frame codec: one betterproto2 container message per binary WebSocket frame.

A container (the app's ``ClientMessage`` or ``ServerMessage``) has the framework fields
``requestId=1, reply=2, error=3, userError=4, trace=5`` and one oneof holding
``pingPong=50``, ``byteStreamOperation=51`` and the app's ``<prefix>Request`` /
``<prefix>Response`` fields. Python code talks about calls by *prefix* (the proto field
name without ``Request``/``Response``, e.g. ``"uEcho"``); betterproto2 names the
attribute ``u_echo_request``. :class:`FrameSchema` maps between the two.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import betterproto2

__all__ = [
    "BYTE_STREAM_NUMBER",
    "PING_PONG_NUMBER",
    "CallField",
    "Frame",
    "FrameError",
    "FrameSchema",
    "check_wire_structure",
    "proto_meta",
]

PING_PONG_NUMBER = 50
BYTE_STREAM_NUMBER = 51

MsgT = TypeVar("MsgT", bound=betterproto2.Message)

_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5
_MAX_DEPTH = 64


def proto_meta(cls: type[betterproto2.Message]) -> betterproto2.ProtoClassMetadata:
    """betterproto2's per-class field metadata (its ``classproperty`` confuses mypy)."""
    any_cls: Any = cls
    meta: betterproto2.ProtoClassMetadata = any_cls._betterproto
    return meta


class FrameError(ValueError):
    """A frame could not be decoded; the stream is closed with 4000 (badArg)."""


@dataclass(frozen=True, slots=True)
class CallField:
    """One app member of the container's oneof, e.g. ``uEchoRequest``."""

    attr: str
    """betterproto2 attribute name (``u_echo_request``)."""
    json_name: str
    """Proto JSON name (``uEchoRequest``)."""
    prefix: str
    """Call prefix (``uEcho``)."""
    is_request: bool
    message_cls: type[betterproto2.Message]


@dataclass(slots=True)
class Frame:
    """A decoded, validated frame."""

    request_id: str
    reply: bool
    error: str | None
    user_error: bool | None
    trace: betterproto2.Message | None
    member: str
    """Attribute name of the oneof member that is set, ``""`` when none."""
    value: betterproto2.Message | None
    """The oneof member's message (may be all-default, so test ``is not None``)."""


def _read_varint(data: bytes, pos: int, end: int) -> int:
    """Return the position after the varint at ``pos``; raise on truncation."""
    for i in range(pos, min(pos + 10, end)):
        if data[i] < 0x80:
            return i + 1
    raise FrameError("truncated or overlong varint")


def _varint_value(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(pos, min(pos + 10, end)):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i + 1
        shift += 7
    raise FrameError("truncated or overlong varint")


def check_wire_structure(
    data: bytes,
    cls: type[betterproto2.Message] | None,
    start: int = 0,
    end: int | None = None,
    depth: int = 0,
) -> None:
    """Walk the protobuf wire structure and raise :class:`FrameError` if it is broken.

    betterproto2 silently accepts truncated input (``0a056d`` parses as
    ``request_id='m'``) where ts-proto throws; walking the tags and lengths, and
    descending into known message fields, restores the TypeScript behaviour.
    """
    if end is None:
        end = len(data)
    if depth > _MAX_DEPTH:
        raise FrameError("message nested too deeply")
    meta = proto_meta(cls) if cls is not None else None
    pos = start
    while pos < end:
        key, pos = _varint_value(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        if wire_type == _WIRE_VARINT:
            pos = _read_varint(data, pos, end)
        elif wire_type == _WIRE_I64:
            pos += 8
        elif wire_type == _WIRE_I32:
            pos += 4
        elif wire_type == _WIRE_LEN:
            length, pos = _varint_value(data, pos, end)
            sub_end = pos + length
            if sub_end > end:
                raise FrameError("length-delimited field runs past the end")
            if meta is not None and cls is not None:
                name = meta.field_name_by_number.get(number)
                if name is not None:
                    field_meta = meta.meta_by_field_name[name]
                    if field_meta.proto_type in (betterproto2.TYPE_MESSAGE, betterproto2.TYPE_MAP):
                        sub_cls = meta.cls_by_field.get(name)
                        if isinstance(sub_cls, type) and issubclass(sub_cls, betterproto2.Message):
                            check_wire_structure(data, sub_cls, pos, sub_end, depth + 1)
            pos = sub_end
        else:
            raise FrameError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise FrameError("field runs past the end")


def _camel(attr: str) -> str:
    # The same rule betterproto2's to_dict uses for JSON names.
    return betterproto2.Casing.CAMEL(attr).rstrip("_")


def _pythonize(name: str) -> str:
    """betterproto2-compiler's field naming (``uHTTPGetRequest`` -> ``u_http_get_request``)."""
    if "_" not in name and any(c.isupper() for c in name):
        name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
        name = re.sub(r"(?<=[A-Z])([A-Z])(?=[a-z])", r"_\1", name)
        name = re.sub(r"(?<=[a-zA-Z])([0-9])", r"_\1", name)
        name = name.lower()
    if keyword.iskeyword(name):
        return name + "_"
    if not name.isidentifier():
        return "_" + name
    return name


class FrameSchema(Generic[MsgT]):
    """What the codec knows about one container class (``ClientMessage`` / ``ServerMessage``)."""

    def __init__(self, container: type[MsgT]) -> None:
        self.container = container
        meta = proto_meta(container)
        groups = [
            g
            for g, fields in meta.oneof_field_by_group.items()
            if any(meta.meta_by_field_name[f.name].number == PING_PONG_NUMBER for f in fields)
        ]
        if len(groups) != 1:
            raise TypeError(f"{container.__name__} has no oneof holding pingPong = 50")
        self.group: str = groups[0]
        self.ping_attr: str = meta.field_name_by_number[PING_PONG_NUMBER]
        self.byte_stream_attr: str | None = meta.field_name_by_number.get(BYTE_STREAM_NUMBER)
        self.ping_cls: type[betterproto2.Message] = meta.cls_by_field[self.ping_attr]
        self.byte_stream_cls: type[betterproto2.Message] | None = (
            meta.cls_by_field[self.byte_stream_attr] if self.byte_stream_attr else None
        )
        trace_attr = meta.field_name_by_number.get(5)
        self.trace_cls: type[betterproto2.Message] | None = (
            meta.cls_by_field[trace_attr] if trace_attr else None
        )
        self.fields_by_attr: dict[str, CallField] = {}
        self._by_prefix: dict[tuple[str, bool], CallField] = {}
        for f in meta.oneof_field_by_group[self.group]:
            number = meta.meta_by_field_name[f.name].number
            if number in (PING_PONG_NUMBER, BYTE_STREAM_NUMBER):
                continue
            json_name = _camel(f.name)
            if json_name.endswith("Request"):
                prefix, is_request = json_name[: -len("Request")], True
            elif json_name.endswith("Response"):
                prefix, is_request = json_name[: -len("Response")], False
            else:
                continue
            call = CallField(f.name, json_name, prefix, is_request, meta.cls_by_field[f.name])
            self.fields_by_attr[f.name] = call
            self._by_prefix[(prefix, is_request)] = call

    def lookup(self, prefix: str, *, request: bool) -> CallField | None:
        """Find the ``<prefix>Request`` (or ``Response``) member by its proto prefix."""
        found = self._by_prefix.get((prefix, request))
        if found is not None:
            return found
        # Proto names like ``uHTTPGet`` do not survive betterproto2's snake/camel round
        # trip; fall back to the compiler's naming rule.
        attr = _pythonize(prefix + ("Request" if request else "Response"))
        found = self.fields_by_attr.get(attr)
        if found is not None and found.is_request == request:
            return found
        return None

    def prefixes(self, *, request: bool) -> list[str]:
        """Every call prefix that has a ``Request`` (or ``Response``) member here."""
        return [p for (p, r) in self._by_prefix if r == request]

    # --- decoding ------------------------------------------------------------------

    def decode(self, data: bytes) -> Frame:
        """Parse and validate one frame; raise :class:`FrameError` if it is malformed."""
        check_wire_structure(data, self.container)
        try:
            message = self.container.parse(data)
            member, value = betterproto2.which_one_of(message, self.group)
        except Exception as exc:  # betterproto2 raises assorted errors on bad input
            raise FrameError(f"invalid message: {exc}") from exc
        fields: Any = message
        return Frame(
            request_id=fields.request_id,
            reply=fields.reply,
            error=fields.error,
            user_error=fields.user_error,
            trace=fields.trace,
            member=member,
            value=value,
        )

    # --- encoding ------------------------------------------------------------------

    def encode(
        self,
        *,
        request_id: str = "",
        reply: bool = False,
        error: str | None = None,
        user_error: bool | None = None,
        trace: betterproto2.Message | None = None,
        member: str | None = None,
        value: betterproto2.Message | None = None,
    ) -> bytes:
        """Build and serialise one container message."""
        kwargs: dict[str, Any] = {"request_id": request_id, "reply": reply}
        if error is not None:
            kwargs["error"] = error
        if user_error is not None:
            kwargs["user_error"] = user_error
        if trace is not None:
            kwargs["trace"] = trace
        if member is not None:
            kwargs[member] = value
        return bytes(self.container(**kwargs))

    def ping(self) -> bytes:
        """The ``{pingPong: {}}`` frame."""
        return self.encode(member=self.ping_attr, value=self.ping_cls())
