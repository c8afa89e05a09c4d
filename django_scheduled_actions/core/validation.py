"""Argument and return validation from a function's signature and type annotations.

``Validator.to_json(args)`` checks a dict of arguments *before* anything runs or is stored and returns
the JSON form that is stored; ``Validator.to_python(json_args)`` turns stored JSON back into the
Python values the function receives; ``Validator.result_to_json(value)`` checks a returned value
against the return annotation (Convex's ``returns:``) and returns the JSON form that is stored.
Supported annotations: int, float, str, bool, None, list[T], dict[str, T], X | None, Literal[...],
datetime, date, UUID, Decimal, Any (and no annotation: checks nothing beyond JSON).
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.dateparse import parse_date, parse_datetime

from ..exceptions import ArgumentValidationError, ReturnValidationError


class _Mismatch(Exception):
    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} ({text})"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:  # list[int], Literal['a'], not their bare __name__
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Converter:
    """Converts between Python values and JSON for one annotation, in both directions."""

    def __init__(self, annotation: Any):
        self.annotation = annotation

    def to_json(self, value: Any, path: str, *, from_json: bool = False) -> Any:
        return _convert(self.annotation, value, path, to_json=True, from_json=from_json)

    def to_python(self, value: Any, path: str) -> Any:
        return _convert(self.annotation, value, path, to_json=False, from_json=True)


def _convert(tp: Any, value: Any, path: str, *, to_json: bool, from_json: bool) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return _plain_json(value, path)
    if tp is None or tp is type(None):
        if value is None:
            return None
        raise _Mismatch(path, f"expected None, got {_describe(value)}")
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(tp), value, path, to_json=to_json, from_json=from_json)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise _Mismatch(path, f"expected one of {', '.join(map(repr, choices))}, got {_describe(value)}")
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise _Mismatch(path, f"expected list, got {_describe(value)}")
        return [_convert(item, v, f"{path}[{i}]", to_json=to_json, from_json=from_json) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        key_tp, item = typing.get_args(tp) or (str, Any)
        if key_tp is not str:
            raise TypeError(f"{path}: only dict[str, T] is supported, not {tp}")
        if not isinstance(value, dict):
            raise _Mismatch(path, f"expected dict, got {_describe(value)}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Mismatch(path, f"dict keys must be str, got {_describe(k)}")
            _check_text(k, path)
            out[k] = _convert(item, v, f"{path}[{k!r}]", to_json=to_json, from_json=from_json)
        return out
    scalar = SCALARS.get(tp)
    if scalar is None:
        raise TypeError(f"{path}: unsupported annotation {tp!r}")
    return scalar(value, path, to_json, from_json)


def _convert_union(options: tuple[Any, ...], value: Any, path: str, *, to_json: bool, from_json: bool) -> Any:
    errors = []
    for option in options:
        try:
            return _convert(option, value, path, to_json=to_json, from_json=from_json)
        except _Mismatch as exc:
            errors.append(exc)
    names = " | ".join("None" if o is type(None) else _type_name(o) for o in options)
    raise _Mismatch(path, f"expected {names}, got {_describe(value)}")


def _int(value: Any, path: str, to_json: bool, from_json: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Mismatch(path, f"expected int, got {_describe(value)}")
    return value


def _float(value: Any, path: str, to_json: bool, from_json: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Mismatch(path, f"expected float, got {_describe(value)}")
    if not math.isfinite(value):
        raise _Mismatch(path, f"expected a finite float, got {value!r} (not representable in JSON)")
    return float(value)


def _str(value: Any, path: str, to_json: bool, from_json: bool) -> str:
    if not isinstance(value, str):
        raise _Mismatch(path, f"expected str, got {_describe(value)}")
    _check_text(value, path)
    return value


def _bool(value: Any, path: str, to_json: bool, from_json: bool) -> bool:
    if not isinstance(value, bool):
        raise _Mismatch(path, f"expected bool, got {_describe(value)}")
    return value


Scalar = Callable[[Any, str, bool, bool], Any]  # (value, path, to_json, from_json) -> the converted value


def _textual(kind: type, parse: Callable[[str], Any], fmt: Callable[[Any], str]) -> Scalar:
    def convert(value: Any, path: str, to_json: bool, from_json: bool) -> Any:
        if isinstance(value, str) and from_json:
            try:
                parsed = parse(value)
            except (ValueError, InvalidOperation):
                parsed = None
            if parsed is None:
                raise _Mismatch(path, f"expected {kind.__name__} in ISO/text form, got {_describe(value)}")
            value = parsed
        if not isinstance(value, kind) or (kind is date and isinstance(value, datetime)):
            raise _Mismatch(path, f"expected {kind.__name__}, got {_describe(value)}")
        if isinstance(value, datetime) and value.tzinfo is None:  # kind is datetime (refused above for a date)
            raise _Mismatch(path, "expected an aware datetime, got a naive one")
        if isinstance(value, Decimal) and not value.is_finite():
            raise _Mismatch(path, f"expected a finite Decimal, got {value!r}")
        return fmt(value) if to_json else value

    return convert


SCALARS: dict[Any, Scalar] = {
    int: _int,
    float: _float,
    str: _str,
    bool: _bool,
    datetime: _textual(datetime, parse_datetime, lambda v: v.isoformat()),
    date: _textual(date, parse_date, lambda v: v.isoformat()),
    uuid.UUID: _textual(uuid.UUID, uuid.UUID, str),
    Decimal: _textual(Decimal, Decimal, str),
}


def _check_text(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Mismatch(path, "string is not valid UTF-8 (lone surrogate)") from exc
    if "\x00" in value:
        raise _Mismatch(path, "string contains a NUL character")


def _plain_json(value: Any, path: str, depth: int = 0) -> Any:
    """Accept any JSON value (for Any / unannotated parameters), rejecting what JSON cannot hold."""
    if depth > 64:
        raise _Mismatch(path, "nested deeper than 64 levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return _float(value, path, True, True)
    if isinstance(value, str):
        return _str(value, path, True, True)
    if isinstance(value, list | tuple):
        return [_plain_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Mismatch(path, f"dict keys must be str, got {_describe(k)}")
            _check_text(k, path)
            out[k] = _plain_json(v, f"{path}[{k!r}]", depth + 1)
        return out
    raise _Mismatch(path, f"expected a JSON value, got {_describe(value)}")


class Validator:
    """Validates and converts the arguments of one registered function."""

    def __init__(self, name: str, fn: Callable[..., Any]):
        self.name = name
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        params = list(signature.parameters.values())[1:]  # the first parameter is ctx
        self.params: dict[str, tuple[Converter, Any]] = {}
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise TypeError(f"{name}: parameter {p.name!r} must be a plain or keyword-only parameter")
            annotation = hints.get(p.name, Any)
            self.params[p.name] = (Converter(annotation), p.default)
            _check_annotation(name, f"parameter {p.name!r}", annotation)
        returns = hints.get("return", Any)
        _check_annotation(name, "the return annotation", returns)
        # None: nothing to check beyond JSON (no annotation, or Any), as Convex without ``returns:``
        self.returns: Converter | None = None if returns is Any else Converter(returns)

    def _walk(self, args: Any, *, to_json: bool, from_json: bool) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise ArgumentValidationError(self.name, f"arguments must be a dict, got {_describe(args)}")
        unknown = sorted(set(args) - set(self.params), key=str)
        if unknown:
            raise ArgumentValidationError(self.name, "unexpected argument", str(unknown[0]))
        out = {}
        for pname, (converter, default) in self.params.items():
            if pname not in args:
                if default is inspect.Parameter.empty:
                    raise ArgumentValidationError(self.name, "missing required argument", pname)
                continue
            try:
                if to_json:
                    out[pname] = converter.to_json(args[pname], pname, from_json=from_json)
                else:
                    out[pname] = converter.to_python(args[pname], pname)
            except _Mismatch as exc:
                raise ArgumentValidationError(self.name, exc.message, exc.path) from None
        return out

    def to_json(self, args: Any, *, from_json: bool = False) -> dict[str, Any]:
        """Validate ``args`` and return their JSON form. ``from_json`` accepts ISO strings for dates etc."""
        return self._walk(args, to_json=True, from_json=from_json)

    def to_python(self, json_args: Any) -> dict[str, Any]:
        """Decode stored JSON arguments into the values the function receives."""
        return self._walk(json_args, to_json=False, from_json=True)

    def result_to_json(self, value: Any) -> Any:
        """Check a returned value against the return annotation; return the JSON form that is stored.

        Raises ``ReturnValidationError`` naming the path (``result[2]['id']``) on a mismatch, and
        ``TypeError`` for a value JSON cannot hold where nothing is annotated.
        """
        if value is None:  # the common no-result case: valid for -> None, X | None, Any and no annotation
            if self.returns is None or _accepts_none(self.returns.annotation):
                return None
        if self.returns is not None:
            try:
                value = self.returns.to_json(value, "result")
            except _Mismatch as exc:
                raise ReturnValidationError(self.name, exc.message, exc.path) from None
        return to_json_value(value, f"the result of {self.name}")


def _accepts_none(tp: Any) -> bool:
    if tp is None or tp is type(None):
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _check_annotation(name: str, where: str, tp: Any) -> None:
    """Fail at decoration time (start-up) on annotations that cannot be validated."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is None or tp is type(None) or origin is typing.Literal or tp in SCALARS:
        return
    if tp in (list, dict):
        return
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(tp):
            _check_annotation(name, where, arg)
        return
    if origin is dict:
        key_tp, item = typing.get_args(tp)
        if key_tp is str:
            _check_annotation(name, where, item)
            return
    raise TypeError(
        f"{name}: {where} has an unsupported annotation {tp!r}; use int, float, "
        "str, bool, None, list[T], dict[str, T], X | None, Literal[...], datetime, date, "
        "UUID or Decimal"
    )


_ENCODER = DjangoJSONEncoder(allow_nan=False, separators=(",", ":"))  # keeps no state between calls


def dumps(value: Any) -> str:
    """Serialise a value for storage; raises TypeError/ValueError on what JSON cannot hold."""
    return _ENCODER.encode(value)


def to_json_value(value: Any, what: str) -> Any:
    """Round-trip a return value through JSON (DjangoJSONEncoder), with a clear error if impossible."""
    try:
        return json.loads(dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
