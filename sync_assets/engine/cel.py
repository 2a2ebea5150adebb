"""CEL expressions for field transforms and validation rules, run with cel-python (`celpy`).

A sync config carries expressions in two places: a field mapping `{type: javascript,
expression: ...}` (a transform) and a validation rule `{name, condition, message}`. The protocol
says both are CEL (the envelope `{dialect: 'cel', source: '...'}`); the spec's own transform
example is the JavaScript-looking `value.toUpperCase()`. CEL's grammar parses that as a
receiver-style call of a function `toUpperCase` on `value`, so we register a small set of
JavaScript-named string functions as CEL extension functions (below). Nothing here ever runs
Python `eval`/`exec`: `celpy`'s tree-walking interpreter (`InterpretedRunner`) evaluates the
parse tree; its transpiling runner (which uses `exec`) is not used.

API
---
* `compile_expression(source) -> CelProgram`: parse and check once (cached by source text);
  raises `ExpressionError` (a `ValueError`) with a one-line message, e.g. the syntax error
  with its line and column, or an unknown function name.
* `CelProgram.evaluate(variables) -> object`: run with plain Python values, get a plain
  Python value back; raises `EvaluationError` with a short message for a run-time problem of
  one record (missing variable, no such key, type mismatch, division by zero, ...).
* `CelProgram.variables`: the free top-level identifiers the expression reads (not the names of
  built-in functions or types such as `int`, `string`, `size`, nor comprehension variables),
  so a loader can tell users early that an expression names a field that does not exist.

The variables an expression sees (bound by the caller, not here)
---------------------------------------------------------------
For a transform: `value` is the source field's value (after `defaultValue` has been applied:
the default runs BEFORE the transform, so `value` is null only when the field is null/missing
and no default is set), `record` is the whole source record as a map, and each source field is
also bound by its own name when the name is a valid CEL identifier (`[_a-zA-Z][_a-zA-Z0-9]*`).
A validation condition sees `record` and the fields by name. Use `has(record.email)` to test
for a field that may be missing; reading a missing key is a run-time error.

Values in and out
-----------------
In: `None` -> null; `bool` -> bool; `int` -> int (must fit in int64); `float` -> double;
`Decimal` -> double (binary floating point: `Decimal("0.10")` becomes `0.1`, precision
beyond ~15 significant digits is lost); `str` -> string; `bytes` -> bytes;
`datetime.datetime` -> timestamp (naive means UTC); `datetime.date` -> timestamp at
midnight UTC of that day (CEL has no date type; this keeps `getFullYear()`, comparisons with
`timestamp(...)` and so on working); `datetime.timedelta` -> duration; `datetime.time` and
`uuid.UUID` -> string (ISO form / canonical form); lists and tuples -> list; dicts -> map
(keys must be str, int or bool). Anything else is an `EvaluationError` naming the variable.
Only the variables the expression references are converted.

Out: null -> `None`, bool -> `bool`, int/uint -> `int`, double -> `float`, string -> `str`,
bytes -> `bytes`, timestamp -> timezone-aware `datetime.datetime` in UTC (so a `date` input
passed through unchanged comes back as a `datetime` at 00:00 UTC), duration -> `timedelta`,
list -> `list`, map -> `dict`, a type (from `type(x)`) -> its CEL name as `str`.

Extension functions (JavaScript names, plus cel-go ext-strings names)
--------------------------------------------------------------------
Every one can be called receiver style, `value.trim()`, or global style, `trim(value)`.
A null (or otherwise wrongly typed) receiver or argument is a run-time error with a readable
message, e.g. `toUpperCase() called on null; expected string`.

* `s.toUpperCase()`, `s.toLowerCase()`: Unicode case mapping (like JavaScript).
* `s.trim()`: strips leading and trailing whitespace.
* `s.startsWith(p)`, `s.endsWith(p)`: as in standard CEL, with null-safe messages.
* `s.includes(sub)`: substring test; `list.includes(x)`: membership (CEL equality).
* `s.replace(a, b)`: replaces EVERY occurrence of `a` (like JS `replaceAll` and cel-go's
  `replace`; JavaScript's `replace` with a string pattern would replace only the first).
* `s.split(sep)`: list of strings; an empty `sep` splits into characters (as in JavaScript).
* `s.substring(start[, end])`: JavaScript semantics: indexes are ints, clamped to
  `[0, size(s)]`, and swapped when `start > end`; counts Unicode code points.
* `s.padStart(n[, pad])`, `s.padEnd(n[, pad])`: pad to `n` code points with `pad`
  (default `" "`), repeated and truncated as in JavaScript.
* `s.lowerAscii()`, `s.upperAscii()`: cel-go ext-strings; only ASCII letters change.
* `list.join([sep])`: cel-go ext-strings; every element must be a string; `sep` defaults to "".

Standard CEL is there as usual: `size(x)`, `string(x)`, `int(x)`, `double(x)`, `has(m.f)`,
`x in list`, `s.contains(t)`, `s.matches(re)`, `timestamp(s)`, `duration(s)`, the macros
`all`, `exists`, `exists_one`, `map`, `filter`, the ternary `c ? a : b`, and so on. There is no
JavaScript `.length`: use `size(s)`.

Where we correct cel-python 0.5 towards the CEL spec (by overriding its operator functions,
the documented extension point):

* Arithmetic never mixes int, uint and double (CEL has no implicit conversion): `5 / 2.0` is
  an error that suggests `double(x)`; cel-python silently computed `5 / 2.0 == 2`. `Decimal`
  inputs are doubles, so write `price * 2.0`, not `price * 2`. Bools are not numbers.
* `==`, `!=` and `in` follow CEL's heterogeneous equality: values of different types are
  simply unequal (`1 == null` is false, not an error) and numbers compare by value across
  int/uint/double (`1 == 1.0`). `<`, `<=`, `>`, `>=` also compare numbers across types.
* `string(true)` is "true" (cel-python said "True"); `string(null)` is an error.

Checks made at compile time: syntax; every called function exists (so an unknown function is
an `ExpressionError`, never a run-time surprise); `has()` takes one field selection; macros get
their variable and the right number of arguments; message construction (`T{f: v}`) and
leading-dot calls (`.f()`) are refused.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, base_functions
from lark.exceptions import UnexpectedCharacters, UnexpectedToken

__all__ = [
    "CelProgram",
    "EvaluationError",
    "ExpressionError",
    "compile_expression",
]


class ExpressionError(ValueError):
    """An expression that cannot be compiled: syntax error, unknown function, bad macro."""


class EvaluationError(Exception):
    """A run-time problem evaluating an expression for one record."""


# --------------------------------------------------------------------------- type names

_UTC = dt.UTC
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# celpy class name -> CEL type name, for messages and for `type(x)` results.
_CEL_TYPE_NAMES: dict[type, str] = {
    celtypes.BoolType: "bool",
    celtypes.IntType: "int",
    celtypes.UintType: "uint",
    celtypes.DoubleType: "double",
    celtypes.StringType: "string",
    celtypes.BytesType: "bytes",
    celtypes.ListType: "list",
    celtypes.MapType: "map",
    celtypes.TimestampType: "timestamp",
    celtypes.DurationType: "duration",
    celtypes.TypeType: "type",
    type(None): "null_type",
}
_NAMES_BY_CLASS_NAME = {cls.__name__: name for cls, name in _CEL_TYPE_NAMES.items()}
_NAMES_BY_CLASS_NAME["NoneType"] = "null"


def _kind(value: object) -> str:
    """The CEL type name of a run-time value (celpy or plain Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool | celtypes.BoolType):
        return "bool"
    if isinstance(value, celtypes.UintType):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.timedelta):
        return "duration"
    if isinstance(value, type):
        return "type"
    return type(value).__name__


_NUMERIC = frozenset({"int", "uint", "double"})


# --------------------------------------------------------------------------- conversions


def _to_cel(value: object) -> Any:
    """Plain Python -> celpy value. Raises TypeError/ValueError with a short message."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} does not fit in a CEL int (64-bit)")
        return celtypes.IntType(value)
    if isinstance(value, float | Decimal):
        return celtypes.DoubleType(float(value))
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return celtypes.BytesType(bytes(value))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return celtypes.TimestampType(value)
    if isinstance(value, dt.date):
        return celtypes.TimestampType(dt.datetime(value.year, value.month, value.day, tzinfo=_UTC))
    if isinstance(value, dt.timedelta):
        return celtypes.DurationType(value)
    if isinstance(value, dt.time):
        return celtypes.StringType(value.isoformat())
    if isinstance(value, uuid.UUID):
        return celtypes.StringType(str(value))
    if isinstance(value, Mapping):
        items = {}
        for key, item in value.items():
            if not isinstance(key, str | int):  # bool is an int
                raise TypeError(
                    f"map key {key!r} is a {type(key).__name__}; CEL keys are string, int or bool"
                )
            items[_to_cel(key)] = _to_cel(item)
        return celtypes.MapType(items)
    if isinstance(value, list | tuple):
        return celtypes.ListType([_to_cel(item) for item in value])
    raise TypeError(f"values of type {type(value).__name__} are not supported")


def _from_cel(value: object) -> object:
    """celpy value -> plain Python value."""
    if value is None:
        return None
    if isinstance(value, CELEvalError):
        raise EvaluationError(_describe(value))
    if isinstance(value, bool | celtypes.BoolType):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dt.datetime):
        tz = value.tzinfo or _UTC
        plain = dt.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=tz,
        )
        return plain.astimezone(_UTC)
    if isinstance(value, dt.timedelta):
        return dt.timedelta(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    if isinstance(value, dict):
        return {_from_cel(k): _from_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_from_cel(item) for item in value]
    if isinstance(value, type):
        return _CEL_TYPE_NAMES.get(value, value.__name__)
    raise EvaluationError(f"the expression produced an unsupported value ({type(value).__name__})")


# --------------------------------------------------------------------------- messages

_OPERATOR_SYMBOLS = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
}
_OVERLOAD_RE = re.compile(
    r"found no matching overload for (?:Token\('RULE', )?'(\w+)'\)? applied to '\((.*)\)'"
)
_CLASS_RE = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>")
_NO_SELECTION_RE = re.compile(r"with type: '(.*)' does not support field selection")
_WRAPPED_REPR_RE = re.compile(r"\b(?:String|Int|Uint|Double|Bool|Bytes)Type\((.*?)\)")


def _clean(text: str) -> str:
    """Strip celpy/Python implementation details from a message; keep it on one line."""
    text = _CLASS_RE.sub(lambda m: _NAMES_BY_CLASS_NAME.get(m.group(1), m.group(1)), text)
    text = _WRAPPED_REPR_RE.sub(r"\1", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _describe(error: CELEvalError) -> str:
    """A short, readable message for a celpy evaluation error."""
    args = error.args
    message = str(args[0]) if args else "evaluation error"
    detail = ""
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2]:
        detail = str(args[2][0])
    message = message.split(" (in activation ", 1)[0]
    overload = _OVERLOAD_RE.search(message)
    if overload:
        symbol = _OPERATOR_SYMBOLS.get(overload.group(1), overload.group(1))
        operands = _clean(overload.group(2)).split(", ")
        if len(operands) == 2:
            return f"no such overload: {operands[0]} {symbol} {operands[1]}"
        return f"no such overload for {symbol}"
    if message.startswith("undeclared reference to "):
        return _clean(message)
    if message.startswith("no such member in mapping: "):
        return _clean("no such key: " + message.removeprefix("no such member in mapping: "))
    selection = _NO_SELECTION_RE.search(message)
    if selection:
        kind = _clean(selection.group(1))
        tree = error.tree
        if isinstance(tree, lark.Tree) and tree.data == "member_dot" and len(tree.children) == 2:
            return f"cannot select field '{tree.children[1]}' from {kind} (only maps have fields)"
        return f"cannot select a field from {kind} (only maps have fields)"
    if message == "modulus or divide by zero":
        return "division or modulus by zero"
    if message == "return error for overflow":
        return _clean(f"invalid value: {detail}" if detail else "overflow")
    if message == "no such key" and len(args) >= 3 and args[2]:
        return _clean(f"no such key: {args[2][0]!r}")
    if message == "invalid_argument" and detail:
        return _clean(detail)
    if detail and detail not in message:
        message = f"{message}: {detail}"
    return _clean(message)


# --------------------------------------------------------------------------- operator shims


def _error(message: str) -> CELEvalError:
    return CELEvalError(message)


def _arith(symbol: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Strict CEL arithmetic: no mixing of int/uint/double, no bool arithmetic."""

    def apply(left: Any, right: Any) -> Any:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        lk, rk = _kind(left), _kind(right)
        if lk in _NUMERIC and rk in _NUMERIC and lk != rk:
            return _error(
                f"no such overload: {lk} {symbol} {rk} (CEL does not mix number "
                "types; convert one side with double(), int() or uint())"
            )
        if "bool" in (lk, rk) or "null" in (lk, rk):
            return _error(f"no such overload: {lk} {symbol} {rk}")
        try:
            result = op(left, right)
        except ZeroDivisionError:
            return _error("division by zero" if symbol == "/" else "modulus by zero")
        except (ValueError, OverflowError):
            return _error(f"overflow in {lk} {symbol} {rk}")
        except TypeError:
            return _error(f"no such overload: {lk} {symbol} {rk}")
        if result is NotImplemented:
            return _error(f"no such overload: {lk} {symbol} {rk}")
        return result

    apply.__name__ = f"cel_{op.__name__}"
    return apply


def _cel_equals(left: Any, right: Any) -> bool:
    """CEL heterogeneous equality (cel-spec): different types are unequal, numbers by value."""
    lk, rk = _kind(left), _kind(right)
    if lk in _NUMERIC and rk in _NUMERIC:
        return float(left) == float(right) if "double" in (lk, rk) else int(left) == int(right)
    if lk != rk:
        return False
    if lk == "null":
        return True
    if lk == "list":
        return len(left) == len(right) and all(
            _cel_equals(a, b) for a, b in zip(left, right, strict=True)
        )
    if lk == "map":
        if len(left) != len(right):
            return False
        for key, item in left.items():
            match = [k for k in right if _cel_equals(k, key)]
            if not match or not _cel_equals(item, right[match[0]]):
                return False
        return True
    if lk in ("bool", "string", "bytes", "timestamp", "duration"):
        return bool(operator.eq(_plain_scalar(left), _plain_scalar(right)))
    return left is right or bool(left == right)


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, bool | celtypes.BoolType):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    return value


def _equality(negate: bool) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        return celtypes.BoolType(_cel_equals(left, right) != negate)

    apply.__name__ = "cel_ne" if negate else "cel_eq"
    return apply


_ORDERED = frozenset({"string", "bytes", "bool", "timestamp", "duration"})


def _ordering(symbol: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        lk, rk = _kind(left), _kind(right)
        if lk in _NUMERIC and rk in _NUMERIC:
            lv = float(left) if lk == "double" else int(left)
            rv = float(right) if rk == "double" else int(right)
            return celtypes.BoolType(bool(op(lv, rv)))
        if lk == rk and lk in _ORDERED:
            return celtypes.BoolType(bool(op(_plain_scalar(left), _plain_scalar(right))))
        return _error(f"no such overload: {lk} {symbol} {rk}")

    apply.__name__ = f"cel_{op.__name__}"
    return apply


def _cel_in(item: Any, container: Any) -> Any:
    if isinstance(item, CELEvalError):
        return item
    if isinstance(container, CELEvalError):
        return container
    kind = _kind(container)
    if kind in ("list", "map"):
        return celtypes.BoolType(any(_cel_equals(item, c) for c in container))
    return _error(f"no such overload: {_kind(item)} in {kind}")


def _cel_string(value: Any) -> Any:
    if isinstance(value, CELEvalError):
        return value
    if value is None:
        return _error("string() of null; guard with `x == null ? ... : string(x)`")
    if isinstance(value, bool | celtypes.BoolType):
        return celtypes.StringType("true" if value else "false")
    try:
        return celtypes.StringType(value)
    except (TypeError, ValueError) as exc:
        return _error(_clean(f"string() of {_kind(value)}: {exc}"))


# --------------------------------------------------------------------------- extensions


class _ArgumentError(Exception):
    pass


def _expect(function: str, position: str, value: Any, kind: str) -> None:
    actual = _kind(value)
    if actual != kind:
        if position == "receiver":
            raise _ArgumentError(f"{function}() called on {actual}; expected {kind}")
        raise _ArgumentError(f"{function}(): {position} is {actual}; expected {kind}")


def _extension(
    name: str, arity: tuple[int, int], receiver: str | tuple[str, ...] = "string"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap an extension: check arity and receiver type, return errors as CEL error values.

    Returning (not raising) a `CELEvalError` keeps CEL's short-circuit `&&`, `||`, `?:`
    semantics, as the celpy documentation recommends for extension functions.
    `arity` counts the receiver.
    """
    kinds = (receiver,) if isinstance(receiver, str) else receiver

    def decorate(impl: Callable[..., Any]) -> Callable[..., Any]:
        low, high = arity

        def function(*args: Any) -> Any:
            for arg in args:
                if isinstance(arg, CELEvalError):
                    return arg
            if not args:
                return _error(
                    f"{name}() needs a {' or '.join(kinds)} to work on, "
                    f"e.g. value.{name}(...) or {name}(value, ...)"
                )
            if not low <= len(args) <= high:
                want = str(low - 1) if low == high else f"{low - 1} to {high - 1}"
                return _error(
                    f"{name}() takes {want} argument(s) after the receiver, got {len(args) - 1}"
                )
            if _kind(args[0]) not in kinds:
                return _error(
                    f"{name}() called on {_kind(args[0])}; expected " + " or ".join(kinds)
                )
            try:
                return impl(*args)
            except _ArgumentError as exc:
                return _error(str(exc))

        function.__name__ = name
        function.__doc__ = impl.__doc__
        return function

    return decorate


def _int_arg(function: str, position: str, value: Any) -> int:
    _expect(function, position, value, "int")
    return int(value)


def _str_arg(function: str, position: str, value: Any) -> str:
    _expect(function, position, value, "string")
    return str(value)


@_extension("toUpperCase", (1, 1))
def _to_upper_case(s: str) -> Any:
    return celtypes.StringType(s.upper())


@_extension("toLowerCase", (1, 1))
def _to_lower_case(s: str) -> Any:
    return celtypes.StringType(s.lower())


@_extension("trim", (1, 1))
def _trim(s: str) -> Any:
    return celtypes.StringType(s.strip())


@_extension("startsWith", (2, 2))
def _starts_with(s: str, prefix: Any) -> Any:
    return celtypes.BoolType(s.startswith(_str_arg("startsWith", "argument", prefix)))


@_extension("endsWith", (2, 2))
def _ends_with(s: str, suffix: Any) -> Any:
    return celtypes.BoolType(s.endswith(_str_arg("endsWith", "argument", suffix)))


@_extension("includes", (2, 2), receiver=("string", "list"))
def _includes(container: Any, item: Any) -> Any:
    if isinstance(container, str):
        return celtypes.BoolType(_str_arg("includes", "argument", item) in container)
    return celtypes.BoolType(any(_cel_equals(item, element) for element in container))


@_extension("replace", (3, 3))
def _replace(s: str, old: Any, new: Any) -> Any:
    old_s = _str_arg("replace", "first argument", old)
    new_s = _str_arg("replace", "second argument", new)
    return celtypes.StringType(s.replace(old_s, new_s))


@_extension("split", (2, 2))
def _split(s: str, sep: Any) -> Any:
    separator = _str_arg("split", "argument", sep)
    parts = list(s) if separator == "" else s.split(separator)
    return celtypes.ListType([celtypes.StringType(part) for part in parts])


@_extension("substring", (2, 3))
def _substring(s: str, start: Any, end: Any = None) -> Any:
    size = len(s)
    begin = min(max(_int_arg("substring", "start", start), 0), size)
    stop = size if end is None else min(max(_int_arg("substring", "end", end), 0), size)
    if begin > stop:
        begin, stop = stop, begin
    return celtypes.StringType(s[begin:stop])


def _pad(name: str, s: str, length: Any, pad: Any) -> str:
    target = _int_arg(name, "length", length)
    filler = " " if pad is None else _str_arg(name, "pad", pad)
    missing = target - len(s)
    if missing <= 0 or filler == "":
        return ""
    return (filler * math.ceil(missing / len(filler)))[:missing]


@_extension("padStart", (2, 3))
def _pad_start(s: str, length: Any, pad: Any = None) -> Any:
    return celtypes.StringType(_pad("padStart", s, length, pad) + s)


@_extension("padEnd", (2, 3))
def _pad_end(s: str, length: Any, pad: Any = None) -> Any:
    return celtypes.StringType(s + _pad("padEnd", s, length, pad))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@_extension("lowerAscii", (1, 1))
def _lower_ascii(s: str) -> Any:
    return celtypes.StringType(s.translate(_ASCII_LOWER))


@_extension("upperAscii", (1, 1))
def _upper_ascii(s: str) -> Any:
    return celtypes.StringType(s.translate(_ASCII_UPPER))


@_extension("join", (1, 2), receiver="list")
def _join(items: Iterable[Any], sep: Any = None) -> Any:
    separator = "" if sep is None else _str_arg("join", "separator", sep)
    parts = []
    for index, item in enumerate(items):
        if _kind(item) != "string":
            raise _ArgumentError(f"join(): element {index} is {_kind(item)}; expected string")
        parts.append(str(item))
    return celtypes.StringType(separator.join(parts))


_EXTENSIONS: tuple[Callable[..., Any], ...] = (
    _to_upper_case,
    _to_lower_case,
    _trim,
    _starts_with,
    _ends_with,
    _includes,
    _replace,
    _split,
    _substring,
    _pad_start,
    _pad_end,
    _lower_ascii,
    _upper_ascii,
    _join,
)

#: Names of the extension functions registered on top of standard CEL.
EXTENSION_FUNCTIONS: frozenset[str] = frozenset(f.__name__ for f in _EXTENSIONS)

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "_+_": _arith("+", operator.add),
    "_-_": _arith("-", operator.sub),
    "_*_": _arith("*", operator.mul),
    "_/_": _arith("/", operator.truediv),
    "_%_": _arith("%", operator.mod),
    "_==_": _equality(negate=False),
    "_!=_": _equality(negate=True),
    "_<_": _ordering("<", operator.lt),
    "_<=_": _ordering("<=", operator.le),
    "_>_": _ordering(">", operator.gt),
    "_>=_": _ordering(">=", operator.ge),
    "_in_": _cel_in,
    "string": _cel_string,
    **{f.__name__: f for f in _EXTENSIONS},
}

# --------------------------------------------------------------------------- static checks

_CALLABLE_NAMES = frozenset(
    name for name in (*base_functions, *_FUNCTIONS) if not name.startswith("_")
)
# Identifiers celpy resolves without a binding: functions, types, `google.protobuf...`.
_BUILTIN_IDENTIFIERS = _CALLABLE_NAMES | {"google"}
_GLOBAL_MACROS = frozenset({"has", "dyn"})
# celpy's comprehension macros and how many arguments each takes (celpy has no 3-arg map).
_METHOD_MACROS = {
    "map": 2,
    "filter": 2,
    "all": 2,
    "exists": 2,
    "exists_one": 2,
    "reduce": 4,
    "min": 0,
}
_PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)


def _unwrap(node: Any) -> Any:
    """Descend through single-child wrapper nodes to the interesting one."""
    while (
        isinstance(node, lark.Tree)
        and node.data in _PASS_THROUGH
        and len(node.children) == 1
        and isinstance(node.children[0], lark.Tree)
    ):
        node = node.children[0]
    return node


def _macro_variable(arg: Any) -> str | None:
    node = _unwrap(arg)
    if isinstance(node, lark.Tree) and node.data == "ident":
        return str(node.children[0])
    return None


class _Analysis:
    """One walk of the parse tree: free identifiers and compile-time problems."""

    def __init__(self, ast: lark.Tree) -> None:
        self.referenced: set[str] = set()
        self.problems: list[tuple[int, int, str]] = []
        self._visit(ast, frozenset())

    def _problem(self, where: Any, message: str) -> None:
        line = getattr(where, "line", None)
        column = getattr(where, "column", None)
        if line is None and isinstance(where, lark.Tree):
            line = getattr(where.meta, "line", None)
            column = getattr(where.meta, "column", None)
        self.problems.append((line or 0, column or 0, message))

    def _args(self, exprlist: Any) -> list[Any]:
        if isinstance(exprlist, lark.Tree) and exprlist.data == "exprlist":
            return list(exprlist.children)
        return []

    def _visit(self, node: Any, bound: frozenset[str]) -> None:
        if not isinstance(node, lark.Tree):
            return
        data = node.data
        if data == "ident":
            name = str(node.children[0])
            if name not in bound:
                self.referenced.add(name)
            return
        if data == "dot_ident":
            self.referenced.add(str(node.children[0]))
            return
        if data == "dot_ident_arg":
            token = node.children[0]
            self._problem(token, f"leading-dot call .{token}() is not supported")
            return
        if data == "member_object":
            self._problem(node, "message construction (Type{field: value}) is not supported")
            return
        if data == "ident_arg":
            self._visit_call(node, bound)
            return
        if data == "member_dot_arg":
            self._visit_method(node, bound)
            return
        for child in node.children:
            self._visit(child, bound)

    def _visit_call(self, node: lark.Tree, bound: frozenset[str]) -> None:
        token = node.children[0]
        name = str(token)
        args = self._args(node.children[1]) if len(node.children) > 1 else []
        if name == "has":
            target = _unwrap(args[0]) if len(args) == 1 else None
            if not (isinstance(target, lark.Tree) and target.data == "member_dot"):
                self._problem(
                    token, "has() takes exactly one field selection, e.g. has(record.email)"
                )
        elif name not in _GLOBAL_MACROS and name not in _CALLABLE_NAMES:
            self._problem(token, f"unknown function '{name}'")
        for arg in args:
            self._visit(arg, bound)

    def _visit_method(self, node: lark.Tree, bound: frozenset[str]) -> None:
        member, token = node.children[0], node.children[1]
        name = str(token)
        args = self._args(node.children[2]) if len(node.children) > 2 else []
        self._visit(member, bound)
        if name not in _METHOD_MACROS:
            if name not in _CALLABLE_NAMES:
                self._problem(token, f"unknown function '{name}'")
            for arg in args:
                self._visit(arg, bound)
            return
        expected = _METHOD_MACROS[name]
        if len(args) != expected:
            self._problem(token, f"{name}() takes {expected} argument(s), got {len(args)}")
            return
        if name == "min":
            return
        if name == "reduce":
            accumulator, element = _macro_variable(args[0]), _macro_variable(args[1])
            if accumulator is None or element is None:
                self._problem(
                    token, "reduce() needs two variable names first, e.g. reduce(r, x, 0, r + x)"
                )
                return
            self._visit(args[2], bound)
            self._visit(args[3], bound | {accumulator, element})
            return
        variable = _macro_variable(args[0])
        if variable is None:
            self._problem(token, f"{name}() needs a variable name first, e.g. {name}(x, ...)")
            return
        self._visit(args[1], bound | {variable})


# --------------------------------------------------------------------------- compile


_ENVIRONMENT: celpy.Environment | None = None
_ENVIRONMENT_LOCK = threading.Lock()


def _syntax_message(error: CELParseError) -> str:
    line, column = error.line, error.column
    cause = error.__context__
    what = "syntax error"
    if isinstance(cause, UnexpectedToken):
        token = cause.token
        if token.type == "$END":
            what = "unexpected end of expression"
        elif token.type == "RESERVED":
            what = f"'{token}' is a reserved word"
        else:
            what = f"unexpected '{token}'"
    elif isinstance(cause, UnexpectedCharacters):
        what = f"unexpected character {cause.char!r}"
    elif error.args:
        what = str(error.args[0]).splitlines()[0]
    where = f" at line {line}, column {column}" if line is not None else ""
    return f"CEL syntax error{where}: {what}"


class CelProgram:
    """A compiled CEL expression; evaluate it for many records."""

    __slots__ = ("_referenced", "_runner", "_variables", "source")

    def __init__(self, source: str, runner: celpy.Runner, referenced: frozenset[str]) -> None:
        self.source = source
        self._runner = runner
        self._referenced = referenced
        self._variables = referenced - _BUILTIN_IDENTIFIERS

    def __repr__(self) -> str:
        return f"CelProgram({self.source!r})"

    @property
    def variables(self) -> frozenset[str]:
        """Free top-level identifiers the expression reads.

        Comprehension variables (`x` in `list.map(x, x * 2)`) and the names of built-in
        functions and types (`int`, `string`, `size`, ...) are not included.
        """
        return self._variables

    def evaluate(self, variables: Mapping[str, object]) -> object:
        """Evaluate with the given variables; return a plain Python value.

        Raises `EvaluationError` for a missing variable, an unsupported input value or any
        run-time error of the expression.
        """
        missing = sorted(self._variables.difference(variables))
        if missing:
            names = ", ".join(repr(name) for name in missing)
            plural = "s" if len(missing) > 1 else ""
            raise EvaluationError(f"undeclared variable{plural} {names}")
        context: dict[str, Any] = {}
        for name in self._referenced:
            if name in variables:
                try:
                    context[name] = _to_cel(variables[name])
                except (TypeError, ValueError) as exc:
                    raise EvaluationError(f"variable {name!r}: {exc}") from None
        try:
            result = self._runner.evaluate(context)
        except CELEvalError as exc:
            raise EvaluationError(_describe(exc)) from exc
        except EvaluationError:
            raise
        except Exception as exc:  # celpy itself failed; report it for this record only
            message = _clean(f"{type(exc).__name__}: {exc}")
            raise EvaluationError(f"evaluation failed ({message})") from exc
        return _from_cel(result)


@functools.lru_cache(maxsize=1024)
def compile_expression(source: str) -> CelProgram:
    """Parse and check a CEL expression (cached by source text)."""
    global _ENVIRONMENT
    if not isinstance(source, str):
        raise ExpressionError(f"a CEL expression must be a string, not {type(source).__name__}")
    if not source.strip():
        raise ExpressionError("CEL expression is empty")
    with _ENVIRONMENT_LOCK:
        if _ENVIRONMENT is None:
            _ENVIRONMENT = celpy.Environment()
        environment = _ENVIRONMENT
        try:
            ast = environment.compile(source)
            analysis = _Analysis(ast)
        except CELParseError as exc:
            raise ExpressionError(_syntax_message(exc)) from None
        except RecursionError:  # nested deeper than the parser can walk
            raise ExpressionError("is nested too deeply to compile; write a flatter "
                                  "expression") from None
        if analysis.problems:
            line, column, message = min(analysis.problems)
            raise ExpressionError(f"{message} at line {line}, column {column}")
        runner = environment.program(ast, functions=_FUNCTIONS)
    return CelProgram(source, runner, frozenset(analysis.referenced))
