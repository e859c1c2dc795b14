"""The proto JSON a cross-node call carries: exactly betterproto2's to_dict()/from_dict()."""

# The messages below are written as betterproto2 generates them (field() defaults).
# ruff: noqa: RUF009

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest
from betterproto2_compiler.lib.google.protobuf import StringValue, Struct, Timestamp
from meshsrpc._proto_json import message_from_json, message_to_json

from tests.generated.sgnl24.TestRpc import (
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
    TraceContext,
    UComplexRequest,
)


class Colour(betterproto2.Enum):
    UNSPECIFIED = 0
    RED = 1
    GREEN = 2


@dataclass(eq=False, repr=False)
class Leaf(betterproto2.Message):
    label: str = betterproto2.field(1, betterproto2.TYPE_STRING)
    weight: float = betterproto2.field(2, betterproto2.TYPE_FLOAT)


@dataclass(eq=False, repr=False)
class Everything(betterproto2.Message):
    big: int = betterproto2.field(1, betterproto2.TYPE_INT64)
    unsigned_big: int = betterproto2.field(2, betterproto2.TYPE_UINT64)
    small: int = betterproto2.field(3, betterproto2.TYPE_SINT32)
    ratio: float = betterproto2.field(4, betterproto2.TYPE_DOUBLE)
    blob: bytes = betterproto2.field(5, betterproto2.TYPE_BYTES)
    colour: Colour = betterproto2.field(
        6, betterproto2.TYPE_ENUM, default_factory=lambda: Colour(0)
    )
    flag: bool = betterproto2.field(7, betterproto2.TYPE_BOOL)
    maybe_text: str | None = betterproto2.field(8, betterproto2.TYPE_STRING, optional=True)
    maybe_number: int | None = betterproto2.field(9, betterproto2.TYPE_INT32, optional=True)
    leaf: Leaf | None = betterproto2.field(10, betterproto2.TYPE_MESSAGE, optional=True)
    leaves: list[Leaf] = betterproto2.field(11, betterproto2.TYPE_MESSAGE, repeated=True)
    bigs: list[int] = betterproto2.field(12, betterproto2.TYPE_INT64, repeated=True)
    colours: list[Colour] = betterproto2.field(13, betterproto2.TYPE_ENUM, repeated=True)
    leaf_by_name: dict[str, Leaf] = betterproto2.field(
        14,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_STRING, betterproto2.TYPE_MESSAGE),
    )
    name_by_number: dict[int, str] = betterproto2.field(
        15,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_INT64, betterproto2.TYPE_STRING),
    )
    when: datetime.datetime | None = betterproto2.field(
        16, betterproto2.TYPE_MESSAGE, optional=True, unwrap=lambda: Timestamp
    )
    wrapped_text: str | None = betterproto2.field(
        17, betterproto2.TYPE_MESSAGE, optional=True, unwrap=lambda: StringValue
    )
    extra: Struct | None = betterproto2.field(18, betterproto2.TYPE_MESSAGE, optional=True)
    first: Leaf | None = betterproto2.field(
        19, betterproto2.TYPE_MESSAGE, optional=True, group="choice"
    )
    second: str | None = betterproto2.field(
        20, betterproto2.TYPE_STRING, optional=True, group="choice"
    )
    from_: str = betterproto2.field(21, betterproto2.TYPE_STRING)


def _full() -> Everything:
    return Everything(
        big=-(2**62),
        unsigned_big=2**63,
        small=-7,
        ratio=math.inf,
        blob=b"\x00\xffbytes",
        colour=Colour.GREEN,
        flag=True,
        maybe_text="",
        maybe_number=0,
        leaf=Leaf(),
        leaves=[Leaf(label="a", weight=0.5), Leaf()],
        bigs=[0, 1, -(2**40)],
        colours=[Colour.RED, Colour.UNSPECIFIED],
        leaf_by_name={"x": Leaf(label="y"), "": Leaf()},
        name_by_number={2**40: "big", 0: ""},
        when=datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
        wrapped_text="wrapped",
        extra=Struct.from_dict({"a": [1, "two", None, {"b": True}]}),
        second="chosen",
        from_="keyword",
    )


MESSAGES: list[betterproto2.Message] = [
    Everything(),
    _full(),
    Everything(ratio=math.nan, first=Leaf(label="oneof"), wrapped_text=""),
    Everything(ratio=-math.inf, leaf=Leaf(weight=-0.0)),
    DNotifyRequest(notification="ping"),
    DNotifyRequest(),
    DNotifyResponse(acknowledged=True),
    UComplexRequest(
        string_field="é/\u2028",
        int_field=-3,
        double_field=1.5,
        bool_field=True,
        array_field=["a", ""],
        map_field={"k": "v"},
    ),
    ServerMessage(
        request_id="r", trace=TraceContext(trace_id="t"), d_notify_request=DNotifyRequest()
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_to_json_is_to_dict(message: betterproto2.Message) -> None:
    expected = message.to_dict()
    # Twice: the first call builds the class's plan, the second uses it.
    assert message_to_json(message) == expected
    assert message_to_json(message) == expected
    assert list(message_to_json(message)) == list(expected)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, betterproto2.Message) and type(a) is type(b):
        names = a._betterproto.sorted_field_names
        return all(_same(getattr(a, n), getattr(b, n)) for n in names)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_from_json_is_from_dict(message: betterproto2.Message) -> None:
    data = message.to_dict()
    cls = type(message)
    expected = cls.from_dict(data, ignore_unknown_fields=True)
    assert _same(message_from_json(cls, data), expected)
    assert _same(message_from_json(cls, data), expected)


def test_message_from_json_ignores_unknown_keys_and_nulls() -> None:
    data = {"notification": None, "unknownField": 1, "alsoUnknown": {"x": 1}}
    assert message_from_json(DNotifyRequest, data) == DNotifyRequest()
    data = {"bigs": ["1", 2], "leafByName": {"k": {"label": "v", "extra": 1}}, "from": "f"}
    expected = Everything.from_dict(data, ignore_unknown_fields=True)
    assert _same(message_from_json(Everything, data), expected)


def test_message_from_json_rejects_what_from_dict_rejects() -> None:
    with pytest.raises(ValueError):
        Everything.from_dict({"big": "not a number"}, ignore_unknown_fields=True)
    with pytest.raises(ValueError):
        message_from_json(Everything, {"big": "not a number"})
