"""Proto JSON of betterproto2 messages (what ``to_dict()`` / ``from_dict()`` give), fast.

The mesh carries every cross-node call as the camelCase proto JSON of its message.
betterproto2 computes each class's type hints again on every ``to_dict()`` call
(``typing.get_type_hints``, which compiles every annotation) and re-cases every key
on every ``from_dict()``; here that work is done once per class and field. Values
are still converted by betterproto2's own per-value functions, so the output is
identical. Classes that bring their own ``to_dict``/``from_dict`` (the well-known
types) or validate with pydantic go through betterproto2 unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import betterproto2
from betterproto2 import _value_from_dict, _value_to_dict
from betterproto2.casing import safe_snake_case

__all__ = ["message_from_json", "message_to_json"]

M = TypeVar("M", bound=betterproto2.Message)

_PROTO_JSON = betterproto2.OutputFormat.PROTO_JSON
_CAMEL = betterproto2.Casing.CAMEL
# Values that proto JSON writes and reads as they are (everything else, e.g. 64-bit
# integers as strings or bytes as base64, goes through betterproto2's converters).
_AS_IS = frozenset(
    {
        betterproto2.TYPE_STRING,
        betterproto2.TYPE_BOOL,
        betterproto2.TYPE_INT32,
        betterproto2.TYPE_UINT32,
        betterproto2.TYPE_SINT32,
        betterproto2.TYPE_FIXED32,
        betterproto2.TYPE_SFIXED32,
    }
)
_BASE_TO_DICT = betterproto2.Message.to_dict
_BASE_FROM_DICT = betterproto2.Message.from_dict.__func__  # type: ignore[attr-defined]
_BASE_FROM_DICT_INIT = betterproto2.Message._from_dict_init.__func__  # type: ignore[attr-defined]


class _OutField(NamedTuple):
    name: str
    json_name: str
    meta: Any  # betterproto2.FieldMetadata
    field_type: Any  # the element type of a repeated or optional field
    key_type: Any  # maps only
    value_type: Any  # maps only


class _InField(NamedTuple):
    name: str
    field_cls: Any
    meta: Any
    value_cls: Any  # maps only
    #: As betterproto2: null means "not set", except for google.protobuf.Value.
    keeps_null: bool


# JSON keys remembered per class: unknown keys are cached too, but a peer sending
# ever new ones must not grow the cache without bound.
_MAX_KEYS_PER_CLASS = 256
# Per class: its fields for encoding, or None when betterproto2 must do it.
_out_plans: dict[type, tuple[_OutField, ...] | None] = {}
# Per class: JSON key -> field (None: unknown key), or None when betterproto2 must do it.
_in_plans: dict[type, dict[str, _InField | None] | None] = {}


def message_to_json(message: betterproto2.Message) -> dict[str, Any]:
    """``message.to_dict()``: camelCase proto JSON, default values left out."""
    cls = type(message)
    try:
        plan = _out_plans[cls]
    except KeyError:
        plan = _out_plans[cls] = _out_plan(cls)
    if plan is None:
        return message.to_dict()
    output: dict[str, Any] = {}
    for name, json_name, meta, field_type, key_type, value_type in plan:
        value = getattr(message, name)
        if meta.repeated:
            if value:
                output[json_name] = [_to_json(item, meta, field_type) for item in value]
        elif meta.proto_type == betterproto2.TYPE_MAP:
            if value:
                key_meta, value_meta = meta.map_meta
                output[json_name] = {
                    _to_json(k, key_meta, key_type): _to_json(v, value_meta, value_type)
                    for k, v in value.items()
                }
        # Set messages and optionals always count; other scalars only when not 0/""/false.
        elif value is not None and (
            meta.proto_type == betterproto2.TYPE_MESSAGE or meta.optional or value
        ):
            output[json_name] = _to_json(value, meta, field_type)
    return output


def message_from_json(cls: type[M], value: Any) -> M:
    """``cls.from_dict(value, ignore_unknown_fields=True)``."""
    try:
        plan = _in_plans[cls]
    except KeyError:
        plan = _in_plans[cls] = _in_plan(cls)
    if plan is None or not isinstance(value, Mapping):
        return cls.from_dict(value, ignore_unknown_fields=True)
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        try:
            target = plan[key]
        except KeyError:
            target = _in_field(cls, key)
            if len(plan) < _MAX_KEYS_PER_CLASS:
                plan[key] = target
        if target is None:
            continue
        name, field_cls, meta, value_cls, keeps_null = target
        if item is None and not keeps_null:
            continue
        if meta.proto_type == betterproto2.TYPE_MAP:
            key_meta, value_meta = meta.map_meta
            item = {
                _from_json(k, key_meta, type(None)): _from_json(v, value_meta, value_cls)
                for k, v in item.items()
            }
        elif meta.repeated:
            item = [_from_json(element, meta, field_cls) for element in item]
        else:
            item = _from_json(item, meta, field_cls)
        kwargs[name] = item
    return cls(**kwargs)


def _to_json(value: Any, meta: Any, field_type: Any) -> Any:
    proto_type = meta.proto_type
    if proto_type in _AS_IS:
        return value
    if proto_type == betterproto2.TYPE_MESSAGE:
        if meta.unwrap is not None:
            value = meta.unwrap().from_wrapped(value)
        return message_to_json(value)
    return _value_to_dict(value, proto_type, field_type, None, _PROTO_JSON, _CAMEL, False)[0]


def _from_json(value: Any, meta: Any, field_cls: Any) -> Any:
    proto_type = meta.proto_type
    if proto_type == betterproto2.TYPE_MESSAGE:
        unwrap = meta.unwrap
        message = message_from_json(unwrap() if unwrap else field_cls, value)
        return message.to_wrapped() if unwrap else message
    if proto_type == betterproto2.TYPE_STRING or proto_type == betterproto2.TYPE_BOOL:
        return value
    return _value_from_dict(value, meta, field_cls, True)


def _own_codec(cls: type, method: str, base: Callable[..., Any]) -> bool:
    """True if ``cls`` (or a base below Message) overrides ``method``."""
    found = getattr(cls, method)
    return getattr(found, "__func__", found) is not base


def _is_pydantic(cls: type) -> bool:
    # The check betterproto2's own to_dict() makes (pydantic is optional there).
    pydantic = getattr(betterproto2, "pydantic", None)
    return pydantic is not None and bool(pydantic.dataclasses.is_pydantic_dataclass(cls))


def _out_plan(cls: Any) -> tuple[_OutField, ...] | None:
    if _own_codec(cls, "to_dict", _BASE_TO_DICT) or _is_pydantic(cls):
        return None
    hints = cls._type_hints()
    plan = []
    for name, meta in cls._betterproto.meta_by_field_name.items():
        hint = hints[name]
        key_type = value_type = None
        if meta.repeated or meta.optional:
            hint = hint.__args__[0]
        elif meta.proto_type == betterproto2.TYPE_MAP:
            key_type, value_type = hint.__args__
        json_name = _CAMEL(name).rstrip("_")
        plan.append(_OutField(name, json_name, meta, hint, key_type, value_type))
    return tuple(plan)


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
    is_map = meta.proto_type == betterproto2.TYPE_MAP
    value_cls = metadata.cls_by_field[f"{name}.value"] if is_map else None
    keeps_null = field_cls.__module__.endswith("google.protobuf") and field_cls.__name__ == "Value"
    return _InField(name, field_cls, meta, value_cls, keeps_null)
