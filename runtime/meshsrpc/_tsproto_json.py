"""Messages as the JSON of a decoded ts-proto object: the payload shape of a forwarded call.

TypeScript nodes put the object that ts-proto's ``decode()`` returns on the mesh and
hand what they receive to ts-proto's ``encode()``, which throws on a missing scalar
(WIRE.md §3). So a message goes out the way ts-proto would have built it:

- every non-optional scalar present, with its default (``0``, ``""``, ``false``);
- repeated fields as lists (``[]`` when empty), maps as objects (``{}`` when empty);
- enums as numbers, 64-bit integers as numbers (ts-proto's ``forceLong=number``);
- unset ``optional`` fields, unset oneof members and unset message fields absent
  (``undefined`` in TypeScript; never ``null``, which its ``!== undefined`` checks
  would try to encode);
- well-known types as ts-proto maps them: wrappers as their bare value, ``Timestamp``
  as the ISO text ``JSON.stringify`` gives a ``Date``, ``Duration`` as
  ``{seconds, nanos}``, ``Struct``/``Value``/``ListValue`` as plain JSON;
- ``bytes`` as base64 (what a TypeScript node sends, ``JSON.stringify`` of a
  ``Uint8Array``, is an object of index → byte that no node can use; we accept it);
- non-finite floats as the proto JSON strings ``"NaN"``/``"Infinity"``/``"-Infinity"``
  (JSON has no literal for them; JavaScript turns those strings back into numbers).

Reading accepts that shape and canonical proto JSON alike (enum names, 64-bit
integers as strings, defaults left out, ``null`` for "not set"), since older Python
nodes sent the latter. The per-class work (field metadata, casing) is done once per
class, as a plan; a message is then one loop over its plan.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import betterproto2
from betterproto2.casing import safe_snake_case

__all__ = ["message_from_object", "message_to_object"]

M = TypeVar("M", bound=betterproto2.Message)

_CAMEL = betterproto2.Casing.CAMEL
_INTS = frozenset(
    {
        betterproto2.TYPE_INT32,
        betterproto2.TYPE_UINT32,
        betterproto2.TYPE_SINT32,
        betterproto2.TYPE_FIXED32,
        betterproto2.TYPE_SFIXED32,
        betterproto2.TYPE_INT64,
        betterproto2.TYPE_UINT64,
        betterproto2.TYPE_SINT64,
        betterproto2.TYPE_FIXED64,
        betterproto2.TYPE_SFIXED64,
    }
)
_FLOATS = frozenset({betterproto2.TYPE_FLOAT, betterproto2.TYPE_DOUBLE})
_WRAPPERS = frozenset(
    {
        "BoolValue",
        "BytesValue",
        "DoubleValue",
        "FloatValue",
        "Int32Value",
        "Int64Value",
        "StringValue",
        "UInt32Value",
        "UInt64Value",
    }
)
_BASE_TO_DICT = betterproto2.Message.to_dict
_BASE_FROM_DICT = betterproto2.Message.from_dict.__func__  # type: ignore[attr-defined]
_BASE_FROM_DICT_INIT = betterproto2.Message._from_dict_init.__func__  # type: ignore[attr-defined]
# JSON keys remembered per class: a peer sending ever new unknown keys must not grow
# the cache without bound.
_MAX_KEYS_PER_CLASS = 256

# A value converter: Python field value -> JSON value, or JSON value -> Python value.
_Convert = Callable[[Any], Any]


class _OutField(NamedTuple):
    name: str
    key: str
    #: Left out when None (optional, oneof member, message); else always written.
    may_be_absent: bool
    convert: _Convert | None  # None: written as it is


class _InField(NamedTuple):
    name: str
    convert: _Convert | None  # None: taken as it is
    keeps_null: bool  # google.protobuf.Value: null is a value, not "not set"


_out_plans: dict[type, tuple[_OutField, ...] | None] = {}
_in_plans: dict[type, dict[str, _InField | None] | None] = {}


def message_to_object(message: betterproto2.Message) -> dict[str, Any]:
    """The JSON of ``message`` as ts-proto's ``decode()`` would have built it."""
    cls = type(message)
    try:
        plan = _out_plans[cls]
    except KeyError:
        plan = _out_plans[cls] = _out_plan(cls)
    if plan is None:
        result: dict[str, Any] = message.to_dict()
        return result
    output: dict[str, Any] = {}
    for name, key, may_be_absent, convert in plan:
        value = getattr(message, name)
        if value is None:
            if may_be_absent:
                continue
        elif convert is not None:
            value = convert(value)
        output[key] = value
    return output


def message_from_object(cls: type[M], value: Any) -> M:
    """Build ``cls`` from a ts-proto object or canonical proto JSON; unknown keys are ignored.

    Raises ValueError (or TypeError) for a value that does not fit its field.
    """
    try:
        plan = _in_plans[cls]
    except KeyError:
        plan = _in_plans[cls] = _in_plan(cls)
    if plan is None:
        return cls.from_dict(value, ignore_unknown_fields=True)
    if not isinstance(value, Mapping):
        raise TypeError(f"{cls.__name__} expects a JSON object, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        try:
            target = plan[key]
        except KeyError:
            target = _in_field(cls, key) if isinstance(key, str) else None
            if len(plan) < _MAX_KEYS_PER_CLASS:
                plan[key] = target
        if target is None:
            continue
        name, convert, keeps_null = target
        if item is None and not keeps_null:
            continue
        kwargs[name] = item if convert is None else convert(item)
    return cls(**kwargs)


# --- writing ---------------------------------------------------------------------------


def _out_plan(cls: Any) -> tuple[_OutField, ...] | None:
    if _own_codec(cls, "to_dict", _BASE_TO_DICT) or _is_pydantic(cls):
        return None  # well-known types with a JSON form of their own
    plan = []
    for name, meta in cls._betterproto.meta_by_field_name.items():
        if meta.repeated:
            element = _out_value(meta)
            convert = None if element is None else _each(element)
        elif meta.proto_type == betterproto2.TYPE_MAP:
            convert = _map_out(_out_value(meta.map_meta[1]))
        else:
            convert = _out_value(meta)
        may_be_absent = bool(
            meta.optional or meta.group or meta.proto_type == betterproto2.TYPE_MESSAGE
        )
        plan.append(_OutField(name, _CAMEL(name).rstrip("_"), may_be_absent, convert))
    return tuple(plan)


def _out_value(meta: Any) -> _Convert | None:
    proto_type = meta.proto_type
    if proto_type == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:
            return _unwrapped_out(meta.unwrap())
        return message_to_object
    if proto_type == betterproto2.TYPE_ENUM:
        return int
    if proto_type == betterproto2.TYPE_BYTES:
        return _bytes_out
    if proto_type in _FLOATS:
        return _float_out
    return None  # strings, bools and integers are JSON as they are


def _unwrapped_out(wrapper: Any) -> _Convert | None:
    name = wrapper.__name__
    if name == "Timestamp":
        return _timestamp_out
    if name == "Duration":
        return _duration_out
    if name in _WRAPPERS:
        return _out_value(wrapper._betterproto.meta_by_field_name["value"])
    return lambda value: wrapper.from_wrapped(value).to_dict()


def _each(convert: _Convert) -> _Convert:
    return lambda values: [convert(value) for value in values]


def _map_out(convert: _Convert | None) -> _Convert:
    # JSON object keys are text; ts-proto's number and boolean keys stringify the same way.
    if convert is None:
        return lambda values: {_key_out(k): v for k, v in values.items()}
    return lambda values: {_key_out(k): convert(v) for k, v in values.items()}


def _key_out(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _bytes_out(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _float_out(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _timestamp_out(value: datetime.datetime) -> str:
    # What JSON.stringify gives for a JavaScript Date: UTC, milliseconds, "Z".
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _duration_out(value: datetime.timedelta) -> dict[str, int]:
    # ts-proto keeps Duration a message: whole seconds and nanos of the same sign.
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    seconds = int(micros / 1_000_000)
    return {"seconds": seconds, "nanos": (micros - seconds * 1_000_000) * 1000}


# --- reading ---------------------------------------------------------------------------


def _in_plan(cls: Any) -> dict[str, _InField | None] | None:
    own = _own_codec(cls, "from_dict", _BASE_FROM_DICT) or _own_codec(
        cls, "_from_dict_init", _BASE_FROM_DICT_INIT
    )
    return None if own or _is_pydantic(cls) else {}


def _in_field(cls: Any, key: str) -> _InField | None:
    name = safe_snake_case(key)
    metadata = cls._betterproto
    meta = metadata.meta_by_field_name.get(name)
    field_cls = metadata.cls_by_field.get(name)
    if meta is None or field_cls is None:
        return None  # unknown fields are ignored
    if meta.proto_type == betterproto2.TYPE_MAP:
        key_meta, value_meta = meta.map_meta
        convert: _Convert | None = _map_in(
            _key_in(key_meta.proto_type),
            _in_value(value_meta, metadata.cls_by_field[f"{name}.value"]),
        )
    else:
        element = _in_value(meta, field_cls)
        convert = _list_in(element) if meta.repeated else element
    keeps_null = field_cls.__module__.endswith("google.protobuf") and field_cls.__name__ == "Value"
    return _InField(name, convert, keeps_null)


def _in_value(meta: Any, field_cls: Any) -> _Convert | None:
    proto_type = meta.proto_type
    if proto_type == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:
            return _unwrapped_in(meta.unwrap())
        return lambda value: message_from_object(field_cls, value)
    if proto_type == betterproto2.TYPE_ENUM:
        return lambda value: _enum_in(field_cls, value)
    if proto_type in _INTS:
        return _int_in
    if proto_type in _FLOATS:
        return _float_in
    if proto_type == betterproto2.TYPE_BYTES:
        return _bytes_in
    if proto_type == betterproto2.TYPE_BOOL:
        return _bool_in
    return _str_in


def _unwrapped_in(wrapper: Any) -> _Convert:
    name = wrapper.__name__
    if name in ("Timestamp", "Duration"):
        return lambda value: _seconds_nanos_in(wrapper, value)
    if name in _WRAPPERS:
        convert = _in_value(wrapper._betterproto.meta_by_field_name["value"], None)
        assert convert is not None
        return convert
    return lambda value: wrapper.from_dict(value).to_wrapped()


def _list_in(convert: _Convert | None) -> _Convert:
    def read(values: Any) -> list[Any]:
        if not isinstance(values, list):
            raise TypeError(f"expected a JSON array, got {type(values).__name__}")
        return list(values) if convert is None else [convert(value) for value in values]

    return read


def _map_in(key: _Convert, value: _Convert | None) -> _Convert:
    def read(values: Any) -> dict[Any, Any]:
        if not isinstance(values, Mapping):
            raise TypeError(f"expected a JSON object, got {type(values).__name__}")
        if value is None:
            return {key(k): v for k, v in values.items()}
        return {key(k): value(v) for k, v in values.items()}

    return read


def _key_in(proto_type: str) -> _Convert:
    if proto_type in _INTS:
        return _int_in
    if proto_type == betterproto2.TYPE_BOOL:
        return lambda key: key is True or key == "true"
    return _str_in


def _str_in(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _bool_in(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _int_in(value: Any) -> int:
    # Numbers (ts-proto, forceLong=number) or decimal text (proto JSON for 64 bits).
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(value, int | str):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _float_in(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number, got a boolean")
    if isinstance(value, int | float | str):
        return float(value)  # float("NaN"), float("Infinity"), float("-Infinity") too
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _enum_in(enum_cls: Any, value: Any) -> Any:
    if isinstance(value, bool):
        raise TypeError("expected an enum number or name, got a boolean")
    if isinstance(value, int):
        return enum_cls(value)
    if isinstance(value, str):
        renamed = enum_cls.betterproto_renamed_proto_names_to_value().get(value)
        return enum_cls(renamed) if renamed is not None else enum_cls.from_string(value)
    raise TypeError(f"expected an enum number or name, got {type(value).__name__}")


def _bytes_in(value: Any) -> bytes:
    if isinstance(value, str):
        try:
            # Standard or URL-safe alphabet, padded or not, as proto JSON allows.
            text = value.replace("-", "+").replace("_", "/")
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bytes field is not base64: {exc}") from None
    if isinstance(value, Mapping):
        # JSON.stringify of a Uint8Array, as a TypeScript node sends it: {"0": 1, ...}.
        return bytes(value[str(index)] for index in range(len(value)))
    if isinstance(value, list):
        return bytes(value)
    raise TypeError(f"expected base64 text, got {type(value).__name__}")


def _seconds_nanos_in(wrapper: Any, value: Any) -> Any:
    """A Timestamp or Duration: ``{seconds, nanos}`` (ts-proto) or its proto JSON text."""
    if isinstance(value, Mapping):
        seconds, nanos = _int_in(value.get("seconds", 0)), _int_in(value.get("nanos", 0))
        return wrapper(seconds=seconds, nanos=nanos).to_wrapped()
    return wrapper.from_dict(_str_in(value)).to_wrapped()


# --- class checks ----------------------------------------------------------------------


def _own_codec(cls: type, method: str, base: Callable[..., Any]) -> bool:
    """True if ``cls`` (or a base below Message) overrides ``method``."""
    found = getattr(cls, method)
    return getattr(found, "__func__", found) is not base


def _is_pydantic(cls: type) -> bool:
    # The check betterproto2's own to_dict() makes (pydantic is optional there).
    pydantic = getattr(betterproto2, "pydantic", None)
    return pydantic is not None and bool(pydantic.dataclasses.is_pydantic_dataclass(cls))
