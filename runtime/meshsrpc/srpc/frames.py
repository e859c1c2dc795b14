"""The SRPC frame codec: one betterproto2 container message per binary WebSocket frame.

A container (the app's ``ClientMessage`` or ``ServerMessage``) has the framework fields
``requestId=1, reply=2, error=3, userError=4, trace=5`` and one oneof holding
``pingPong=50``, ``byteStreamOperation=51`` and the app's ``<prefix>Request`` /
``<prefix>Response`` fields. Python code talks about calls by *prefix* (the proto field
name without ``Request``/``Response``, e.g. ``"uEcho"``); betterproto2 names the
attribute ``u_echo_request``. :class:`FrameSchema` maps between the two.

The container itself is encoded and decoded here (the five envelope fields and the
oneof member's tag and length); the member's message, and the trace, go through
``messagecodec`` (a table-driven codec for simple classes, betterproto2 for the rest).
The bytes are the ones betterproto2 writes for the whole container.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import betterproto2

from .messagecodec import check_encoded, encode_message, parse_message
from .protowire import (
    WIRE_I32,
    WIRE_I64,
    WIRE_LEN,
    WIRE_VARINT,
    FrameError,
    check_wire_structure,
    encode_varint,
    proto_meta,
    read_varint,
)

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

# The envelope fields every container has (WIRE.md section 4), in declaration order:
# attribute, field number, proto type.
_ENVELOPE: Final = (
    ("request_id", 1, betterproto2.TYPE_STRING),
    ("reply", 2, betterproto2.TYPE_BOOL),
    ("error", 3, betterproto2.TYPE_STRING),
    ("user_error", 4, betterproto2.TYPE_BOOL),
    ("trace", 5, betterproto2.TYPE_MESSAGE),
)
_REPLY_TRUE: Final = b"\x10\x01"
_USER_ERROR: Final = {False: b"\x20\x00", True: b"\x20\x01"}


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
        self._ping_frame: bytes | None = None  # always the same bytes
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
        # The envelope is encoded and decoded here rather than through betterproto2,
        # whose generic container (de)serialisation costs several times what the
        # inner message does. Only the container layout WIRE.md describes qualifies;
        # any other keeps the betterproto2 path.
        self._members_by_number: dict[int, tuple[str, type[betterproto2.Message]]] | None = None
        self._member_keys: dict[str, bytes] = {}
        if _has_envelope_layout(meta, self.group):
            self._members_by_number = {}
            for f in meta.oneof_field_by_group[self.group]:
                number = meta.meta_by_field_name[f.name].number
                self._members_by_number[number] = (f.name, meta.cls_by_field[f.name])
                self._member_keys[f.name] = encode_varint(number << 3 | WIRE_LEN)

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
        """Parse and validate one frame; raise :class:`FrameError` if it is malformed.

        Like ts-proto, a known field with an unexpected wire type is skipped, and
        truncated input (which betterproto2 accepts) is an error; so are two
        different oneof members.
        """
        members = self._members_by_number
        if members is None:
            return self._decode_generic(data)
        request_id = ""
        reply = False
        error: str | None = None
        user_error: bool | None = None
        trace_span: tuple[int, int] | None = None
        member_number = 0
        member_start = member_end = 0
        end = len(data)
        pos = 0
        try:
            while pos < end:
                key = data[pos]
                if key < 0x80:
                    pos += 1
                elif pos + 1 < end and data[pos + 1] < 0x80:
                    # Two bytes: the key of every app member (field numbers 16..2047).
                    key = (key & 0x7F) | data[pos + 1] << 7
                    pos += 2
                else:
                    key, pos = read_varint(data, pos, end)
                number, wire_type = key >> 3, key & 7
                if wire_type == WIRE_LEN:
                    # 0x80 sends a missing length to read_varint, which reports it.
                    length = data[pos] if pos < end else 0x80
                    if length < 0x80:
                        pos += 1
                    else:
                        length, pos = read_varint(data, pos, end)
                    sub_end = pos + length
                    if sub_end > end:
                        raise FrameError("length-delimited field runs past the end")
                    if number == 1:
                        request_id = data[pos:sub_end].decode()
                    elif number == 3:
                        error = data[pos:sub_end].decode()
                    elif number == 5:
                        trace_span = (pos, sub_end)
                    elif number in members:
                        if member_number and member_number != number:
                            raise FrameError("more than one oneof member")
                        member_number, member_start, member_end = number, pos, sub_end
                    elif number == 0:
                        raise FrameError("field number 0")
                    pos = sub_end
                elif wire_type == WIRE_VARINT:
                    value, pos = read_varint(data, pos, end)
                    if number == 2:
                        reply = value != 0
                    elif number == 4:
                        user_error = value != 0
                    elif number == 0:
                        raise FrameError("field number 0")
                elif wire_type in (WIRE_I64, WIRE_I32):
                    if number == 0:
                        raise FrameError("field number 0")
                    pos += 8 if wire_type == WIRE_I64 else 4
                    if pos > end:
                        raise FrameError("field runs past the end")
                else:
                    raise FrameError(f"unsupported wire type {wire_type}")
            trace = None
            if trace_span is not None and self.trace_cls is not None:
                trace = parse_message(self.trace_cls, data, *trace_span)
            if member_number:
                member, cls = members[member_number]
                value_msg = parse_message(cls, data, member_start, member_end)
                return Frame(request_id, reply, error, user_error, trace, member, value_msg)
            return Frame(request_id, reply, error, user_error, trace, "", None)
        except UnicodeDecodeError as exc:
            raise FrameError(f"invalid UTF-8 in a string field: {exc}") from exc

    def _decode_generic(self, data: bytes) -> Frame:
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
        """Serialise one container message (the bytes betterproto2 would write)."""
        if self._members_by_number is None:
            return self._encode_generic(request_id, reply, error, user_error, trace, member, value)
        # betterproto2 (like ts-proto) writes in declaration order, skips implicit
        # fields at their default and writes proto3 optional ones whenever set.
        parts: list[bytes] = []
        if request_id:
            raw = request_id.encode()
            parts += (b"\x0a", encode_varint(len(raw)), raw)
        if reply:
            parts.append(_REPLY_TRUE)
        if error is not None:
            raw = error.encode()
            parts += (b"\x1a", encode_varint(len(raw)), raw)
        if user_error is not None:
            parts.append(_USER_ERROR[bool(user_error)])
        if trace is not None:
            raw = encode_message(trace)
            parts += (b"\x2a", encode_varint(len(raw)), raw)
        if member is not None and value is not None:
            key = self._member_keys.get(member)
            if key is None:
                raise TypeError(f"{self.container.__name__} has no oneof member {member!r}")
            raw = encode_message(value)
            parts += (key, encode_varint(len(raw)), raw)
        return b"".join(parts)

    def encode_reply(self, request_id: str, member: str, value: betterproto2.Message) -> bytes:
        """``encode(request_id=..., reply=True, member=..., value=...)``: a response frame.

        The hot path of every answered call, without encode's optional fields.
        """
        key = self._member_keys.get(member)
        if key is None:  # the betterproto2 layout, or no such member (encode raises)
            return self.encode(request_id=request_id, reply=True, member=member, value=value)
        raw = encode_message(value)
        if not request_id:
            return b"".join((_REPLY_TRUE, key, encode_varint(len(raw)), raw))
        rid = request_id.encode()
        return b"".join(
            (b"\x0a", encode_varint(len(rid)), rid, _REPLY_TRUE, key, encode_varint(len(raw)), raw)
        )

    def _encode_generic(
        self,
        request_id: str,
        reply: bool,
        error: str | None,
        user_error: bool | None,
        trace: betterproto2.Message | None,
        member: str | None,
        value: betterproto2.Message | None,
    ) -> bytes:
        kwargs: dict[str, Any] = {"request_id": request_id, "reply": reply}
        if error is not None:
            kwargs["error"] = error
        if user_error is not None:
            kwargs["user_error"] = user_error
        if trace is not None:
            kwargs["trace"] = trace
        if member is not None:
            kwargs[member] = value
        raw = bytes(self.container(**kwargs))
        check_encoded(raw, self.container)
        return raw

    def ping(self) -> bytes:
        """The ``{pingPong: {}}`` frame."""
        if self._ping_frame is None:
            self._ping_frame = self.encode(member=self.ping_attr, value=self.ping_cls())
        return self._ping_frame


def _has_envelope_layout(meta: betterproto2.ProtoClassMetadata, group: str) -> bool:
    """True if the container is exactly the five envelope fields, then message oneof members."""
    names = list(meta.meta_by_field_name)
    head = names[: len(_ENVELOPE)]
    if head != [name for name, _, _ in _ENVELOPE]:
        return False
    for name, number, proto_type in _ENVELOPE:
        field_meta = meta.meta_by_field_name[name]
        if field_meta.number != number or field_meta.proto_type != proto_type:
            return False
        if field_meta.repeated:
            return False
    oneof = {f.name for f in meta.oneof_field_by_group[group]}
    for name in names[len(_ENVELOPE) :]:
        field_meta = meta.meta_by_field_name[name]
        if name not in oneof or field_meta.proto_type != betterproto2.TYPE_MESSAGE:
            return False
        if field_meta.repeated or field_meta.number in range(1, 6):
            return False
    return True
