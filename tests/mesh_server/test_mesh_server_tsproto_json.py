"""The payload a cross-node call carries: the JSON of a decoded ts-proto object (WIRE.md §3)."""

# The messages below are written as betterproto2 generates them (field() defaults).
# ruff: noqa: RUF009

from __future__ import annotations

import copy
import datetime
import json
import math
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest
from betterproto2_compiler.lib.google.protobuf import (
    BytesValue,
    Duration,
    Int64Value,
    StringValue,
    Struct,
    Timestamp,
)
from meshsrpc._tsproto_json import message_from_object, message_to_object

from tests.generated.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    DRequestDataRequest,
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
    within: datetime.timedelta | None = betterproto2.field(
        22, betterproto2.TYPE_MESSAGE, optional=True, unwrap=lambda: Duration
    )
    wrapped_big: int | None = betterproto2.field(
        23, betterproto2.TYPE_MESSAGE, optional=True, unwrap=lambda: Int64Value
    )
    wrapped_blob: bytes | None = betterproto2.field(
        24, betterproto2.TYPE_MESSAGE, optional=True, unwrap=lambda: BytesValue
    )
    flags_by_bool: dict[bool, bool] = betterproto2.field(
        25,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_BOOL, betterproto2.TYPE_BOOL),
    )
    colour_by_name: dict[str, Colour] = betterproto2.field(
        26,
        betterproto2.TYPE_MAP,
        map_meta=betterproto2.map_meta(betterproto2.TYPE_STRING, betterproto2.TYPE_ENUM),
    )


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
        within=datetime.timedelta(seconds=90, microseconds=500_000),
        wrapped_big=2**40,
        wrapped_blob=b"\x01",
        flags_by_bool={True: False},
        colour_by_name={"c": Colour.RED},
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


# Every field of an all-defaults message, as ts-proto's decode() builds it.
DEFAULTS = {
    "big": 0,
    "unsignedBig": 0,
    "small": 0,
    "ratio": 0.0,
    "blob": "",
    "colour": 0,
    "flag": False,
    "leaves": [],
    "bigs": [],
    "colours": [],
    "leafByName": {},
    "nameByNumber": {},
    "from": "",
    "flagsByBool": {},
    "colourByName": {},
}


def test_every_non_optional_scalar_is_present_with_its_default() -> None:
    assert message_to_object(Everything()) == DEFAULTS


def test_unset_optional_oneof_and_message_fields_are_absent_never_null() -> None:
    data = message_to_object(Everything())
    for key in ("maybeText", "maybeNumber", "leaf", "when", "wrappedText", "extra", "first"):
        assert key not in data
    assert None not in data.values()


def test_set_fields_take_the_ts_proto_shape() -> None:
    assert message_to_object(_full()) == {
        "big": -(2**62),
        "unsignedBig": 2**63,
        "small": -7,
        "ratio": "Infinity",
        "blob": "AP9ieXRlcw==",
        "colour": 2,
        "flag": True,
        "maybeText": "",
        "maybeNumber": 0,
        "leaf": {"label": "", "weight": 0.0},
        "leaves": [{"label": "a", "weight": 0.5}, {"label": "", "weight": 0.0}],
        "bigs": [0, 1, -(2**40)],
        "colours": [1, 0],
        "leafByName": {"x": {"label": "y", "weight": 0.0}, "": {"label": "", "weight": 0.0}},
        "nameByNumber": {str(2**40): "big", "0": ""},
        "when": "2026-01-02T03:04:05.678Z",
        "wrappedText": "wrapped",
        "extra": {"a": [1, "two", None, {"b": True}]},
        "second": "chosen",
        "from": "keyword",
        "within": {"seconds": 90, "nanos": 500_000_000},
        "wrappedBig": 2**40,
        "wrappedBlob": "AQ==",
        "flagsByBool": {"true": False},
        "colourByName": {"c": 1},
    }


def test_a_negative_duration_has_seconds_and_nanos_of_one_sign() -> None:
    within = datetime.timedelta(seconds=-1, microseconds=500_000)
    assert message_to_object(Everything(within=within))["within"] == {
        "seconds": 0,
        "nanos": -500_000_000,
    }


def test_enums_and_64_bit_integers_are_json_numbers() -> None:
    data = message_to_object(Everything(big=5, colour=Colour.RED, colours=[Colour.GREEN]))
    assert type(data["big"]) is int and data["big"] == 5
    assert type(data["colour"]) is int and data["colour"] == 1
    assert data["colours"] == [2] and type(data["colours"][0]) is int


def test_a_set_oneof_member_is_present_even_with_its_default_value() -> None:
    assert message_to_object(Everything(second=""))["second"] == ""


def test_non_finite_floats_are_proto_json_strings_valid_json_can_carry() -> None:
    data = message_to_object(Everything(ratio=math.nan, leaf=Leaf(weight=-math.inf)))
    assert data["ratio"] == "NaN" and data["leaf"]["weight"] == "-Infinity"
    json.dumps(data, allow_nan=False)


def test_the_example_calls_match_what_typescript_nodes_sent() -> None:
    assert message_to_object(DComputeRequest(number=0, operation="double")) == {
        "number": 0,
        "operation": "double",
    }
    assert message_to_object(DComputeResponse(result=0)) == {"result": 0}
    assert message_to_object(DNotifyRequest()) == {"notification": ""}
    assert message_to_object(DRequestDataRequest(data_size=1)) == {"streamId": 0, "dataSize": 1}


def test_nested_framework_messages_keep_their_defaults() -> None:
    message = ServerMessage(
        request_id="r", trace=TraceContext(trace_id="t"), d_notify_request=DNotifyRequest()
    )
    assert message_to_object(message) == {
        "requestId": "r",
        "reply": False,
        "trace": {"traceId": "t", "spanId": "", "traceFlags": 0},
        "dNotifyRequest": {"notification": ""},
    }


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
def test_a_message_survives_the_ts_proto_shape(message: betterproto2.Message) -> None:
    data = json.loads(json.dumps(message_to_object(message), allow_nan=False))
    # Twice: the first call builds the class's plan, the second uses it.
    assert _same(message_from_object(type(message), data), message)
    assert _same(message_from_object(type(message), data), message)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_canonical_proto_json_from_older_python_nodes_is_still_read(
    message: betterproto2.Message,
) -> None:
    if isinstance(message, Everything):
        # betterproto2's to_dict() leaves a BytesValue's bytes raw (not JSON).
        message = copy.deepcopy(message)
        message.wrapped_blob = None
    data = json.loads(json.dumps(message.to_dict()))
    assert _same(message_from_object(type(message), data), message)


def test_enum_names_and_numbers_are_both_read() -> None:
    data = {"colour": "GREEN", "colours": [1, "GREEN", 0], "colourByName": {"a": "RED", "b": 2}}
    assert message_from_object(Everything, data) == Everything(
        colour=Colour.GREEN,
        colours=[Colour.RED, Colour.GREEN, Colour.UNSPECIFIED],
        colour_by_name={"a": Colour.RED, "b": Colour.GREEN},
    )


def test_64_bit_integers_are_read_from_numbers_and_strings() -> None:
    data = {"big": 2**62, "unsignedBig": str(2**63), "bigs": ["1", 2], "wrappedBig": "7"}
    assert message_from_object(Everything, data) == Everything(
        big=2**62, unsigned_big=2**63, bigs=[1, 2], wrapped_big=7
    )


def test_bytes_are_read_from_base64_and_from_a_stringified_uint8array() -> None:
    # JSON.stringify(new Uint8Array([0, 255, 7])) on a TypeScript node:
    assert message_from_object(Everything, {"blob": {"0": 0, "1": 255, "2": 7}}).blob == (
        b"\x00\xff\x07"
    )
    assert message_from_object(Everything, {"blob": "AP8H"}).blob == b"\x00\xff\x07"
    assert message_from_object(Everything, {"blob": "AP8H"}).blob == b"\x00\xff\x07"
    assert message_from_object(Everything, {"blob": "_-8"}).blob == b"\xff\xef"


def test_durations_and_timestamps_are_read_from_both_shapes() -> None:
    a = message_from_object(Everything, {"within": {"seconds": 90, "nanos": 0}})
    b = message_from_object(Everything, {"within": "90s"})
    assert a.within == b.within == datetime.timedelta(seconds=90)
    c = message_from_object(Everything, {"when": "2026-01-02T03:04:05.678Z"})
    assert c.when == datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)


def test_bool_and_integer_map_keys_are_read_from_their_text() -> None:
    data = {"flagsByBool": {"true": True, "false": False}, "nameByNumber": {"-3": "x"}}
    message = message_from_object(Everything, data)
    assert message.flags_by_bool == {True: True, False: False}
    assert message.name_by_number == {-3: "x"}


def test_unknown_keys_and_nulls_are_ignored() -> None:
    data = {"notification": None, "unknownField": 1, "alsoUnknown": {"x": 1}}
    assert message_from_object(DNotifyRequest, data) == DNotifyRequest()


def test_a_snake_case_key_is_read_like_its_camel_case_form() -> None:
    assert message_from_object(DRequestDataRequest, {"stream_id": 3}).stream_id == 3


@pytest.mark.parametrize(
    "data",
    [
        {"big": "not a number"},
        {"big": 1.5},
        {"flag": "yes"},
        {"leaves": {"not": "a list"}},
        {"blob": "***"},
        {"colour": True},
        {"label": 3, "leaf": {"label": 3}},
    ],
)
def test_a_value_that_does_not_fit_its_field_is_an_error(data: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        message_from_object(Everything, data)


def test_a_message_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(TypeError):
        message_from_object(DNotifyRequest, ["notification"])
