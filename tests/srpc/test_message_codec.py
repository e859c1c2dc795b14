"""The table-driven message codec parses and writes exactly what betterproto2 does."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import betterproto2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from meshsrpc.srpc.messagecodec import encode_message, parse_message
from meshsrpc.srpc.protowire import (
    FrameError,
    VarintOverflow,
    check_wire_structure,
    encode_varint,
)

from tests.generated.sgnl24 import TestRpc


class Colour(betterproto2.Enum):
    RED = 0
    GREEN = 1


@dataclass(eq=False, repr=False)
class Inner(betterproto2.Message):
    text: str = betterproto2.field(1, betterproto2.TYPE_STRING)
    count: int = betterproto2.field(2, betterproto2.TYPE_SINT32)


@dataclass(eq=False, repr=False)
class AllScalars(betterproto2.Message):
    i32: int = betterproto2.field(1, betterproto2.TYPE_INT32)
    i64: int = betterproto2.field(2, betterproto2.TYPE_INT64)
    u32: int = betterproto2.field(3, betterproto2.TYPE_UINT32)
    u64: int = betterproto2.field(4, betterproto2.TYPE_UINT64)
    s32: int = betterproto2.field(5, betterproto2.TYPE_SINT32)
    s64: int = betterproto2.field(6, betterproto2.TYPE_SINT64)
    flag: bool = betterproto2.field(7, betterproto2.TYPE_BOOL)
    colour: Colour = betterproto2.field(  # noqa: RUF009 - betterproto2 fields are factories
        8, betterproto2.TYPE_ENUM, default_factory=lambda: Colour(0)
    )
    f32: int = betterproto2.field(9, betterproto2.TYPE_FIXED32)
    f64: int = betterproto2.field(10, betterproto2.TYPE_FIXED64)
    sf32: int = betterproto2.field(11, betterproto2.TYPE_SFIXED32)
    sf64: int = betterproto2.field(12, betterproto2.TYPE_SFIXED64)
    fl: float = betterproto2.field(13, betterproto2.TYPE_FLOAT)
    db: float = betterproto2.field(14, betterproto2.TYPE_DOUBLE)
    text: str = betterproto2.field(15, betterproto2.TYPE_STRING)
    blob: bytes = betterproto2.field(16, betterproto2.TYPE_BYTES)
    inner: Inner | None = betterproto2.field(  # noqa: RUF009
        17, betterproto2.TYPE_MESSAGE, optional=True
    )
    maybe: int | None = betterproto2.field(18, betterproto2.TYPE_INT32, optional=True)


@dataclass(eq=False, repr=False)
class Packed(betterproto2.Message):
    values: list[int] = betterproto2.field(1, betterproto2.TYPE_INT32, repeated=True)  # noqa: RUF009
    doubles: list[float] = betterproto2.field(2, betterproto2.TYPE_DOUBLE, repeated=True)  # noqa: RUF009


CLASSES: list[type[betterproto2.Message]] = [AllScalars, Inner, Packed] + [
    cls
    for _, cls in inspect.getmembers(TestRpc, inspect.isclass)
    if issubclass(cls, betterproto2.Message)
]


def _reference(cls: type[betterproto2.Message], data: bytes) -> Any:
    """What frames.py did before: the structure check, then betterproto2."""
    try:
        check_wire_structure(data, cls, 0, len(data), 1)
        return cls.parse(data)
    except Exception:
        return FrameError


def _ours(cls: type[betterproto2.Message], data: bytes) -> Any:
    try:
        return parse_message(cls, data, 0, len(data))
    except FrameError:
        return FrameError


def _assert_same_parse(cls: type[betterproto2.Message], data: bytes) -> None:
    expected, got = _reference(cls, data), _ours(cls, data)
    if expected is FrameError:
        assert got is FrameError
        return
    assert got is not FrameError, data.hex()
    assert type(got) is type(expected)
    assert got == expected
    assert got._unknown_fields == expected._unknown_fields
    ours, theirs = _written(encode_message, got), _written(bytes, expected)
    if isinstance(ours, tuple) and ours[0] is ValueError and _holds_over_64_bits(theirs, cls):
        return  # on purpose: encode_message refuses what no peer reads back (see its doc)
    assert ours == theirs


def _holds_over_64_bits(data: Any, cls: type[betterproto2.Message]) -> bool:
    """True if ``data`` (bytes betterproto2 wrote) holds a varint over 64 bits."""
    if not isinstance(data, bytes):
        return False
    try:
        check_wire_structure(data, cls, strict=True)
    except VarintOverflow:
        return True
    except FrameError:
        return False
    return False


def _written(encode: Any, message: betterproto2.Message) -> Any:
    # betterproto2 parses some inputs into values it cannot write back (a packed list
    # in a singular field): then both must fail alike.
    try:
        return encode(message)
    except Exception as exc:
        return (type(exc), str(exc))


def _key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


_WIRE_FIELD = st.one_of(
    st.tuples(st.integers(0, 20), st.integers(0, 2**70)).map(
        lambda t: _key(t[0], 0) + encode_varint(t[1])
    ),
    st.tuples(st.integers(0, 20), st.binary(max_size=12)).map(
        lambda t: _key(t[0], 2) + encode_varint(len(t[1])) + t[1]
    ),
    st.tuples(st.integers(0, 20), st.binary(min_size=8, max_size=8)).map(
        lambda t: _key(t[0], 1) + t[1]
    ),
    st.tuples(st.integers(0, 20), st.binary(min_size=4, max_size=4)).map(
        lambda t: _key(t[0], 5) + t[1]
    ),
    st.tuples(st.integers(0, 20), st.text(max_size=8)).map(
        lambda t: _key(t[0], 2) + encode_varint(len(t[1].encode())) + t[1].encode()
    ),
    st.builds(lambda m: _key(17, 2) + encode_varint(len(m)) + m, st.binary(max_size=6)),
    st.binary(max_size=3),  # junk: broken keys, group wire types, truncation
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CLASSES), st.lists(_WIRE_FIELD, max_size=8))
@example(TestRpc.UComplexRequest, [bytes.fromhex("3880808080808080808002")])
def test_parse_matches_betterproto2_on_any_field_sequence(
    cls: type[betterproto2.Message], fields: list[bytes]
) -> None:
    _assert_same_parse(cls, b"".join(fields))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_parse_matches_betterproto2_on_arbitrary_bytes(data: bytes) -> None:
    for cls in (AllScalars, TestRpc.UComplexRequest, TestRpc.ByteStreamOperation):
        _assert_same_parse(cls, data)


_SCALARS = st.fixed_dictionaries(
    {},
    optional={
        "i32": st.integers(-(2**31), 2**31 - 1),
        "i64": st.integers(-(2**63), 2**63 - 1),
        "u32": st.integers(0, 2**32 - 1),
        "u64": st.integers(0, 2**64 - 1),
        "s32": st.integers(-(2**31), 2**31 - 1),
        "s64": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
        "colour": st.sampled_from(list(Colour)),
        "f32": st.integers(0, 2**32 - 1),
        "f64": st.integers(0, 2**64 - 1),
        "sf32": st.integers(-(2**31), 2**31 - 1),
        "sf64": st.integers(-(2**63), 2**63 - 1),
        "fl": st.floats(width=32),
        "db": st.floats(),
        "text": st.text(max_size=10),
        "blob": st.binary(max_size=10),
        "inner": st.builds(Inner, text=st.text(max_size=5), count=st.integers(-5, 5)),
        "maybe": st.none() | st.integers(-3, 3),
    },
)


@settings(max_examples=300, deadline=None)
@given(_SCALARS)
def test_encode_matches_betterproto2_and_parses_back(values: dict[str, Any]) -> None:
    message = AllScalars(**values)
    data = bytes(message)
    assert encode_message(message) == data
    _assert_same_parse(AllScalars, data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("text", 5), ("i32", "x"), ("i32", 1.5), ("blob", "text"), ("inner", {"text": "x"})],
)
def test_a_value_of_the_wrong_type_fails_as_in_betterproto2(field: str, value: Any) -> None:
    message = AllScalars()
    setattr(message, field, value)
    with pytest.raises(Exception) as expected:
        bytes(message)
    with pytest.raises(type(expected.value)) as got:
        encode_message(message)
    assert str(got.value) == str(expected.value)


def test_unknown_fields_are_kept_and_written_back() -> None:
    data = bytes(TestRpc.UEchoRequest(message="hi")) + _key(9, 0) + b"\x05"
    message = parse_message(TestRpc.UEchoRequest, data, 0, len(data))
    assert message._unknown_fields == b"\x48\x05"
    assert encode_message(message) == data


@pytest.mark.parametrize(
    ("cls", "hex_data"),
    [
        (TestRpc.ByteStreamOperation, "108080808010"),  # write: a message, as varint 2**32
        (TestRpc.ByteStreamOperation, "1d00000000"),  # finish: a message, as 4 bytes
        (AllScalars, "7805"),  # text: a string, as a varint
        (AllScalars, "880105"),  # inner: a message, as a varint
        (AllScalars, "0a0105"),  # i32: a singular int, as length-delimited bytes
        (Inner, "0d01000000"),  # text: a string, as 4 bytes
    ],
)
def test_a_known_field_in_a_wire_type_its_type_cannot_have_is_refused(
    cls: type[betterproto2.Message], hex_data: str
) -> None:
    data = bytes.fromhex(hex_data)
    with pytest.raises(FrameError, match="does not fit its type"):
        parse_message(cls, data, 0, len(data))


def test_repeated_scalars_are_read_packed_and_unpacked() -> None:
    packed = bytes.fromhex("0a03010203") + bytes.fromhex("1208") + bytes(8)
    unpacked = bytes.fromhex("080108020803") + bytes.fromhex("11") + bytes(8)
    for data in (packed, unpacked):
        message: Any = parse_message(Packed, data, 0, len(data))
        assert message.values == [1, 2, 3]
        assert message.doubles == [0.0]
