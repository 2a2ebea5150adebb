"""ObjectQL filters (`source.filters`): both syntaxes parsed into one tree, run in SQL or Python.

`parse_filter` turns the object form or the array form into one normalised, immutable tree;
`compile_filter` lowers it to a SQLAlchemy Core expression (SQLite and PostgreSQL);
`evaluate_filter` gives the same answer for one in-memory record, for endpoints that cannot
push a filter down and for telling whether a record left the filter; `filter_fields` lists
the columns a filter reads.

Meaning follows upstream, read in the public repositories:

* Operators and shapes: objectstack-ai/spec `packages/spec/src/data/filter.zod.ts`. Newer
  spec releases also declare `$like` and `$empty`; they are accepted so that every array
  operator has an object spelling.
* Per-operator meaning: objectstack-ai/objectstack `packages/formula/src/matches-filter.ts`
  (the in-memory evaluator) and its SQL twin's tests (`read-scope-sql-not-null-safe`):
  `$ne`, `$nin` and `$notContains` match NULL (a missing value), positive comparisons
  never do, and `$not` is plain negation (so `$not` of `$gt` returns the NULL rows, and
  `$not` of `$ne` only the equal ones). `$exists` means "has a value", the same as
  `$null: false`. Text operators are case-sensitive. `$like` matches a LIKE pattern against
  the whole value (`%`, `_`, backslash escapes the next character) and runs as GLOB on
  SQLite, whose LIKE ignores ASCII case. A `$field` equality is NULL-safe: two empty
  columns are equal. `$in: []` matches nothing, `$nin: []` everything. `{field: {}}` is
  refused.
* Array form: objectstack-ai/objectql `packages/drivers/memory` and `drivers/sql`:
  `[field, op, value]`, lists of them joined by "and"/"or" strings (none means and; and
  binds tighter than or). The prefix form `["and" | "or" | "not", ...]` is accepted too.

Our own choices: `$or: []` and `$not: {}` are errors (each matches nothing, and a mirroring
sync would then delete everything it synced); an empty filter matches everything. A unary
array operator ignores its value unless the value is `false`, which is refused as a
likely negation. `is_empty` is NULL or '' (or [] in memory). A null member of `$in`
matches NULL. Strings compared with date or
time columns are read as ISO 8601, naive datetimes as UTC; no other coercion happens.
String order is the database collation in SQL and code-point order in Python, which agree
on SQLite and on PostgreSQL's "C" collation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import ColumnCollection
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

__all__ = [
    "CANONICAL_OPS",
    "And",
    "Columns",
    "Condition",
    "FieldRef",
    "FilterError",
    "FilterNode",
    "Not",
    "Or",
    "Scalar",
    "compile_filter",
    "evaluate_filter",
    "filter_fields",
    "parse_filter",
]

Scalar: TypeAlias = str | int | float | bool | None
# What compile_filter reads columns from: a dict of columns, or a table's `.c`.
Columns: TypeAlias = "Mapping[str, ColumnElement[Any]] | ColumnCollection[str, Any]"


class FilterError(ValueError):
    """A filter that cannot be parsed or compiled; `path` says where it went wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --------------------------------------------------------------------------- the tree

COMPARISON_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte"})
ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})
LIST_OPS = frozenset({"in", "nin"})
TEXT_OPS = frozenset({"contains", "not_contains", "starts_with", "ends_with", "like"})
UNARY_OPS = frozenset({"is_null", "is_not_null", "is_empty", "is_not_empty"})
CANONICAL_OPS: frozenset[str] = COMPARISON_OPS | LIST_OPS | TEXT_OPS | UNARY_OPS | {"between"}


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A comparand that is another column of the same record: `{"$field": name}`."""

    name: str


Operand: TypeAlias = Scalar | FieldRef | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one field.

    `value` is a scalar or `FieldRef` for comparisons, a tuple for in / nin / between,
    a string for the text operators, and None for the unary ones. `path` only serves
    error messages, so it does not take part in equality.
    """

    field: str
    op: str
    value: Operand = None
    path: str = dataclasses.field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in CANONICAL_OPS:
            raise ValueError(f"unknown canonical operator {self.op!r}")
        if self.op == "like" and isinstance(self.value, str) and _has_dangling_escape(self.value):
            raise ValueError(f"LIKE pattern {self.value!r} ends with a lone backslash")


@dataclass(frozen=True, slots=True)
class And:
    """All items hold; `And(())` matches everything."""

    items: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one item holds; `Or(())` matches nothing."""

    items: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: FilterNode


FilterNode: TypeAlias = Condition | And | Or | Not

_TRUE = And(())
_FALSE = Or(())


def _and(items: Sequence[FilterNode]) -> FilterNode:
    flat: list[FilterNode] = []
    for item in items:
        if isinstance(item, And):
            flat.extend(item.items)
        elif item == _FALSE:
            return _FALSE
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(items: Sequence[FilterNode]) -> FilterNode:
    flat: list[FilterNode] = []
    for item in items:
        if isinstance(item, Or):
            flat.extend(item.items)
        elif item == _TRUE:
            return _TRUE
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def _not(item: FilterNode) -> FilterNode:
    if isinstance(item, Not):
        return item.item
    if item == _TRUE:
        return _FALSE
    if item == _FALSE:
        return _TRUE
    return Not(item)


# --------------------------------------------------------------------------- parsing

OBJECT_OPERATORS: dict[str, str] = {
    "$eq": "eq",
    "$ne": "ne",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
    "$in": "in",
    "$nin": "nin",
    "$between": "between",
    "$contains": "contains",
    "$notContains": "not_contains",
    "$startsWith": "starts_with",
    "$endsWith": "ends_with",
    "$like": "like",
    # The three flags pick their canonical operator from their true/false value.
    "$null": "null",
    "$exists": "exists",
    "$empty": "empty",
}

ARRAY_OPERATORS: dict[str, str] = {
    "=": "eq",
    "==": "eq",
    "!=": "ne",
    "<>": "ne",
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
    "in": "in",
    "nin": "nin",
    "not_in": "nin",
    "not in": "nin",
    "contains": "contains",
    "notcontains": "not_contains",
    "not_contains": "not_contains",
    "startswith": "starts_with",
    "starts_with": "starts_with",
    "endswith": "ends_with",
    "ends_with": "ends_with",
    "like": "like",
    "between": "between",
    "is_null": "is_null",
    "isnull": "is_null",
    "is_not_null": "is_not_null",
    "isnotnull": "is_not_null",
    "is_empty": "is_empty",
    "is_not_empty": "is_not_empty",
}

_FLAGS = {
    "null": ("is_null", "is_not_null"),
    "exists": ("is_not_null", "is_null"),
    "empty": ("is_empty", "is_not_empty"),
}
_LOGICAL_WORDS = ("and", "or", "not")
_MISSING: Any = object()


def _kind(value: object) -> str:
    """How a JSON reader would name the value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _count(n: int, noun: str, prefix: str) -> str:
    return f"{prefix} {n} {noun}{'' if n == 1 else 's'}"


def parse_filter(raw: object, path: str = "source.filters") -> FilterNode | None:
    """Parse an ObjectQL filter in object or array form; None means "match everything"."""
    if raw is None:
        return None
    node = _parse_any(raw, path)
    return None if node == _TRUE else node


def _parse_any(raw: object, path: str) -> FilterNode:
    if isinstance(raw, Mapping):
        return _parse_object(raw, path)
    if isinstance(raw, list | tuple):
        return _parse_array(raw, path)
    raise FilterError(path, f"a filter must be an object or a list, got {_kind(raw)}")


def _parse_filter_list(value: object, key: str, path: str) -> list[FilterNode]:
    if not isinstance(value, list | tuple):
        raise FilterError(path, f"{key} needs a list of filters, got {_kind(value)}")
    return [_parse_any(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _parse_object(obj: Mapping[Any, Any], path: str) -> FilterNode:
    items: list[FilterNode] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FilterError(path, f"a field name must be a string, got {_kind(key)}")
        key_path = f"{path}.{key}"
        if key == "$and":
            items.append(_and(_parse_filter_list(value, key, key_path)))
        elif key == "$or":
            children = _parse_filter_list(value, key, key_path)
            if not children:
                raise FilterError(key_path, "$or needs at least one filter")
            items.append(_or(children))
        elif key == "$not":
            if not isinstance(value, Mapping | list | tuple):
                raise FilterError(
                    key_path, f"$not needs a filter (an object or a list), got {_kind(value)}"
                )
            child = _parse_any(value, key_path)
            if child == _TRUE:
                raise FilterError(key_path, "$not needs a non-empty filter")
            items.append(_not(child))
        elif key.startswith("$"):
            raise FilterError(
                key_path,
                f"'{key}' is not a logical operator; allowed at this level: $and, $or, $not "
                "(field names cannot start with '$')",
            )
        elif key == "":
            raise FilterError(key_path, "a field name must not be empty")
        else:
            items.extend(_parse_field(key, value, key_path))
    return _and(items)


def _parse_field(name: str, value: object, path: str) -> list[Condition]:
    if not isinstance(value, Mapping) or "$field" in value:
        return [_condition(name, "eq", value, "an equality", path, "object")]
    if not value:
        raise FilterError(
            path, 'an operator object needs at least one operator, e.g. {"$eq": value}'
        )
    conditions = []
    for op_key, op_value in value.items():
        if not isinstance(op_key, str) or not op_key.startswith("$"):
            raise FilterError(
                path,
                f"'{op_key}' is not an operator (operators start with '$'); "
                "filters on related objects are not supported",
            )
        canonical = OBJECT_OPERATORS.get(op_key)
        if canonical is None:
            raise FilterError(
                path,
                f"unknown operator '{op_key}'; allowed operators: {', '.join(OBJECT_OPERATORS)}",
            )
        op_path = f"{path}.{op_key}"
        if canonical in _FLAGS:
            if not isinstance(op_value, bool):
                raise FilterError(op_path, f"{op_key} needs true or false, got {_kind(op_value)}")
            when_true, when_false = _FLAGS[canonical]
            conditions.append(Condition(name, when_true if op_value else when_false, None, path))
        else:
            conditions.append(_condition(name, canonical, op_value, op_key, op_path, "object"))
    return conditions


def _parse_array(arr: Sequence[Any], path: str) -> FilterNode:
    if not arr:
        return _TRUE
    first = arr[0]
    if isinstance(first, str):
        word = first.lower()
        if word in _LOGICAL_WORDS and all(isinstance(x, Mapping | list | tuple) for x in arr[1:]):
            return _parse_prefix(word, arr, path)
        return _parse_condition(arr, path)
    if isinstance(first, Mapping | list | tuple):
        return _parse_joined(arr, path)
    if len(arr) in (2, 3) and isinstance(arr[1], str):
        raise FilterError(path, f"a field name must be a string, got {_kind(first)}")
    raise FilterError(
        path,
        "a filter list is [field, operator, value], ['and' | 'or' | 'not', filter, ...] "
        f"or a list of filters; it starts with {_kind(first)}",
    )


def _parse_prefix(word: str, arr: Sequence[Any], path: str) -> FilterNode:
    children = [_parse_any(item, f"{path}[{i}]") for i, item in enumerate(arr[1:], start=1)]
    if word == "and":
        return _and(children)
    if word == "or":
        if not children:
            raise FilterError(path, "'or' needs at least one filter")
        return _or(children)
    if len(children) != 1:
        raise FilterError(path, f"'not' takes exactly one filter, got {len(children)}")
    if children[0] == _TRUE:
        raise FilterError(f"{path}[1]", "'not' needs a non-empty filter")
    return _not(children[0])


def _parse_joined(arr: Sequence[Any], path: str) -> FilterNode:
    """`[f1, "or", f2, f3]`: and binds tighter than or; no joiner means and."""
    groups: list[list[FilterNode]] = [[]]
    want_filter = True
    for i, item in enumerate(arr):
        item_path = f"{path}[{i}]"
        if isinstance(item, str):
            joiner = item.lower()
            if joiner not in ("and", "or"):
                raise FilterError(
                    item_path, f"expected 'and' or 'or' between filters, got {item!r}"
                )
            if want_filter:
                raise FilterError(item_path, f"{item!r} must stand between two filters")
            if joiner == "or":
                groups.append([])
            want_filter = True
        else:
            groups[-1].append(_parse_any(item, item_path))
            want_filter = False
    if want_filter:
        raise FilterError(f"{path}[{len(arr) - 1}]", f"{arr[-1]!r} must stand between two filters")
    return _or([_and(group) for group in groups])


def _parse_condition(arr: Sequence[Any], path: str) -> Condition:
    if len(arr) not in (2, 3):
        raise FilterError(
            path,
            "a condition is [field, operator] or [field, operator, value], "
            f"got {_count(len(arr), 'element', 'a list of')}",
        )
    name, op_raw = arr[0], arr[1]
    if name == "":
        raise FilterError(path, "a field name must not be empty")
    if not isinstance(op_raw, str):
        raise FilterError(path, f"an operator must be a string, got {_kind(op_raw)}")
    canonical = ARRAY_OPERATORS.get(op_raw.lower())
    if canonical is None:
        raise FilterError(
            path,
            f"unknown operator {op_raw!r}; allowed operators (any case): "
            f"{', '.join(ARRAY_OPERATORS)}",
        )
    value = arr[2] if len(arr) == 3 else _MISSING
    if canonical in UNARY_OPS:
        if value is False:
            opposite = {
                "is_null": "is_not_null",
                "is_not_null": "is_null",
                "is_empty": "is_not_empty",
                "is_not_empty": "is_empty",
            }[canonical]
            raise FilterError(path, f"{op_raw!r} takes no value, got false; use {opposite!r}")
        return Condition(name, canonical, None, path)
    if value is _MISSING:
        raise FilterError(path, f"{op_raw!r} needs a value: [field, {op_raw!r}, value]")
    return _condition(name, canonical, value, repr(op_raw), path, "array")


def _condition(name: str, op: str, value: object, spelled: str, path: str, form: str) -> Condition:
    """Validate `value` for canonical `op` and build the condition.

    `spelled` is the operator as the user wrote it and `form` the syntax ("object" or
    "array"), so that messages suggest operators in the user's own syntax.
    """
    in_name, null_name = ("$in", "$null") if form == "object" else ("'in'", "'is_null'")
    if op in ("eq", "ne"):
        if value is None:
            return Condition(name, "is_null" if op == "eq" else "is_not_null", None, path)
        if isinstance(value, list | tuple):
            raise FilterError(
                path,
                f"{spelled} needs a single value, got a list; use {in_name} for a list of values",
            )
        return Condition(name, op, _comparand(value, path), path)
    if op in ORDERING_OPS:
        if value is None:
            raise FilterError(
                path, f"{spelled} cannot compare with null; use {null_name} to test for null"
            )
        if isinstance(value, Mapping) and "$field" in value:
            return Condition(name, op, _field_ref(value, path), path)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise FilterError(path, f"{spelled} needs a string or a number, got {_kind(value)}")
        return Condition(name, op, _scalar(value, path), path)
    if op in LIST_OPS:
        if not isinstance(value, list | tuple):
            raise FilterError(path, f"{spelled} needs a list of values, got {_kind(value)}")
        members = tuple(_scalar(v, f"{path}[{i}]") for i, v in enumerate(value))
        return Condition(name, op, members, path)
    if op == "between":
        if not isinstance(value, list | tuple) or len(value) != 2:
            got = (
                _count(len(value), "value", "a list of")
                if isinstance(value, list | tuple)
                else _kind(value)
            )
            raise FilterError(
                path, f"{spelled} needs a list of exactly two values [min, max], got {got}"
            )
        bounds = []
        for i, bound in enumerate(value):
            if isinstance(bound, bool) or not isinstance(bound, str | int | float):
                raise FilterError(
                    f"{path}[{i}]",
                    f"{spelled} bounds must be strings or numbers, got {_kind(bound)}",
                )
            bounds.append(_scalar(bound, f"{path}[{i}]"))
        return Condition(name, op, tuple(bounds), path)
    if op in TEXT_OPS:
        if not isinstance(value, str):
            raise FilterError(path, f"{spelled} needs a string, got {_kind(value)}")
        if op == "like" and _has_dangling_escape(value):
            raise FilterError(
                path,
                f"{spelled} pattern ends with a lone backslash; "
                "write two backslashes to match a literal backslash",
            )
        return Condition(name, op, value, path)
    raise AssertionError(f"unhandled operator {op}")  # pragma: no cover


def _comparand(value: object, path: str) -> Scalar | FieldRef:
    if isinstance(value, Mapping) and "$field" in value:
        return _field_ref(value, path)
    return _scalar(value, path)


def _field_ref(value: Mapping[Any, Any], path: str) -> FieldRef:
    extra = [str(k) for k in value if k != "$field"]
    if extra:
        raise FilterError(
            path, f'a field reference is {{"$field": "column"}}; got extra keys: {", ".join(extra)}'
        )
    name = value["$field"]
    if not isinstance(name, str) or not name:
        raise FilterError(
            path, f"$field needs a column name (a non-empty string), got {_kind(name)}"
        )
    return FieldRef(name)


def _scalar(value: object, path: str) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(path, f"value must be a finite number, got {value}")
        return value
    raise FilterError(path, f"value must be a string, number, boolean or null, got {_kind(value)}")


# --------------------------------------------------------------------------- fields


def filter_fields(node: FilterNode | None) -> set[str]:
    """Every column the filter reads, including the targets of `$field` references."""
    if node is None:
        return set()
    if isinstance(node, Condition):
        names = {node.field}
        if isinstance(node.value, FieldRef):
            names.add(node.value.name)
        return names
    if isinstance(node, Not):
        return filter_fields(node.item)
    return set().union(*(filter_fields(item) for item in node.items))


# --------------------------------------------------------------------------- LIKE patterns

_ANY = object()  # `%`
_ONE = object()  # `_`


def _has_dangling_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def _like_tokens(pattern: str) -> list[object]:
    """A `$like` pattern as literal characters and the two wildcards."""
    tokens: list[object] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            tokens.append(next(chars))
        elif ch == "%":
            tokens.append(_ANY)
        elif ch == "_":
            tokens.append(_ONE)
        else:
            tokens.append(ch)
    return tokens


def _text_tokens(op: str, value: str) -> list[object]:
    if op == "like":
        return _like_tokens(value)
    literal: list[object] = list(value)
    if op in ("contains", "not_contains"):
        return [_ANY, *literal, _ANY]
    if op == "starts_with":
        return [*literal, _ANY]
    return [_ANY, *literal]  # ends_with


def _to_like(tokens: list[object]) -> str:
    """LIKE pattern with '/' as its escape character (the one SQLAlchemy autoescape uses)."""
    out = []
    for token in tokens:
        if token is _ANY:
            out.append("%")
        elif token is _ONE:
            out.append("_")
        else:
            ch = str(token)
            out.append("/" + ch if ch in "%_/" else ch)
    return "".join(out)


def _to_glob(tokens: list[object]) -> str:
    """SQLite GLOB pattern; GLOB's own metacharacters become one-character classes."""
    out = []
    for token in tokens:
        if token is _ANY:
            out.append("*")
        elif token is _ONE:
            out.append("?")
        else:
            ch = str(token)
            out.append(f"[{ch}]" if ch in "*?[" else ch)
    return "".join(out)


@lru_cache(maxsize=512)
def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for token in _like_tokens(pattern):
        if token is _ANY:
            parts.append(".*")
        elif token is _ONE:
            parts.append(".")
        else:
            parts.append(re.escape(str(token)))
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------- SQL


class _CaseSensitiveMatch(FunctionElement[bool]):
    """`haystack` matches a pattern, case-sensitively, on every dialect.

    Arguments: the haystack, a LIKE pattern escaped with '/', and the equivalent GLOB
    pattern. Both patterns are bound parameters, so both take part in the statement cache
    key; each dialect renders only the one it needs.
    """

    type = sa.Boolean()
    inherit_cache = True
    name = "case_sensitive_match"


@compiles(_CaseSensitiveMatch)
def _render_like(element: _CaseSensitiveMatch, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, like, _glob = element.clauses.clauses
    return f"({compiler.process(haystack, **kw)} LIKE {compiler.process(like, **kw)} ESCAPE '/')"


@compiles(_CaseSensitiveMatch, "sqlite")
def _render_glob(element: _CaseSensitiveMatch, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's LIKE ignores ASCII case and its case_sensitive_like pragma is per
    # connection, so GLOB (always case-sensitive) carries the meaning instead.
    haystack, _like, glob = element.clauses.clauses
    return f"({compiler.process(haystack, **kw)} GLOB {compiler.process(glob, **kw)})"


def compile_filter(node: FilterNode | None, columns: Columns) -> ColumnElement[bool]:
    """The filter as a SQLAlchemy Core boolean expression over `columns`.

    Values are always bound parameters and names come only from `columns`. Negation is
    pushed down to the conditions, each of which has an exact complement, so SQL's NULL
    logic never leaks through a NOT and the result matches `evaluate_filter`.
    """
    if node is None:
        return sa.true()
    return _compile(node, columns, negate=False)


def _compile(node: FilterNode, columns: Columns, negate: bool) -> ColumnElement[bool]:
    if isinstance(node, Not):
        return _compile(node.item, columns, not negate)
    if isinstance(node, And | Or):
        parts = [_compile(item, columns, negate) for item in node.items]
        # De Morgan: a negated And is an Or of negations, and vice versa.
        conjunction = isinstance(node, And) != negate
        if not parts:
            return sa.true() if conjunction else sa.false()
        return sa.and_(*parts) if conjunction else sa.or_(*parts)
    return _compile_condition(node, columns, negate)


def _column(name: str, columns: Columns, path: str) -> ColumnElement[Any]:
    if name not in columns:
        known = ", ".join(sorted(columns.keys())) or "(none)"
        raise FilterError(path, f"unknown field '{name}'; known fields: {known}")
    return columns[name]


def _is_text(col: ColumnElement[Any]) -> bool:
    return isinstance(col.type, sa.String)


def _bind_value(col: ColumnElement[Any], value: Scalar, path: str) -> object:
    """The value as the column's driver expects it: ISO strings become temporal objects."""
    if not isinstance(value, str):
        return value
    try:
        python_type = col.type.python_type
    except NotImplementedError:
        return value
    if python_type not in (datetime, date, time):
        return value
    parsed = _parse_temporal(value, python_type)
    if parsed is None:
        raise FilterError(
            path, f"{value!r} is not an ISO 8601 {python_type.__name__} (column {col.key!r})"
        )
    if isinstance(parsed, datetime):
        aware_column = bool(getattr(col.type, "timezone", False))
        if aware_column and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        elif not aware_column and parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _compile_condition(cond: Condition, columns: Columns, negate: bool) -> ColumnElement[bool]:
    col = _column(cond.field, columns, cond.path)
    op, value = cond.op, cond.value

    if op in ("is_null", "is_not_null"):
        return col.is_(None) if (op == "is_null") != negate else col.is_not(None)

    if op in ("is_empty", "is_not_empty"):
        empty = (op == "is_empty") != negate
        if _is_text(col):
            blank: ColumnElement[bool] | None = col == ""
        elif isinstance(col.type, NullType):
            blank = sa.cast(col, sa.String) == ""
        else:
            blank = None  # a typed non-text column cannot hold ''
        if empty:
            return col.is_(None) if blank is None else sa.or_(col.is_(None), blank)
        if blank is None:
            return col.is_not(None)
        not_blank = col != "" if _is_text(col) else sa.cast(col, sa.String) != ""
        return sa.and_(col.is_not(None), not_blank)

    if op in ("eq", "ne"):
        equal = (op == "eq") != negate
        if isinstance(value, FieldRef):
            other = _column(value.name, columns, cond.path)
            # NULL-safe on both sides, so two empty columns count as equal.
            return col.is_not_distinct_from(other) if equal else col.is_distinct_from(other)
        bound = _bind_value(col, _as_scalar(value), cond.path)
        return col == bound if equal else sa.or_(col != bound, col.is_(None))

    if op in ORDERING_OPS:
        if isinstance(value, FieldRef):
            rhs: Any = _column(value.name, columns, cond.path)
        else:
            rhs = _bind_value(col, _as_scalar(value), cond.path)
        if not negate:
            return _ordering(op, col, rhs)
        inverse = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}[op]
        parts = [_ordering(inverse, col, rhs), col.is_(None)]
        if isinstance(value, FieldRef):
            parts.append(rhs.is_(None))
        return sa.or_(*parts)

    if op == "between":
        low, high = (_bind_value(col, v, cond.path) for v in _as_tuple(value))
        if not negate:
            return col.between(low, high)
        return sa.or_(col < low, col > high, col.is_(None))

    if op in LIST_OPS:
        members = _as_tuple(value)
        has_null = any(m is None for m in members)
        present = [_bind_value(col, m, cond.path) for m in members if m is not None]
        inside = (op == "in") != negate
        if inside:
            parts = [col.in_(present)] if present else []
            if has_null:
                parts.append(col.is_(None))
            return sa.or_(*parts) if parts else sa.false()
        if has_null:
            return col.not_in(present) if present else col.is_not(None)
        return sa.or_(col.not_in(present), col.is_(None)) if present else sa.true()

    if op in TEXT_OPS:
        if not _is_text(col) and not isinstance(col.type, NullType):
            raise FilterError(cond.path, f"{op} needs a text column; '{cond.field}' is {col.type}")
        tokens = _text_tokens(op, str(value))
        match = _CaseSensitiveMatch(
            col,
            sa.literal(_to_like(tokens), sa.String()),
            sa.literal(_to_glob(tokens), sa.String()),
        )
        positive = (op != "not_contains") != negate
        return match if positive else sa.or_(sa.not_(match), col.is_(None))

    raise AssertionError(f"unhandled operator {op}")  # pragma: no cover


def _ordering(op: str, col: ColumnElement[Any], rhs: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "gt":
        result = col > rhs
    elif op == "gte":
        result = col >= rhs
    elif op == "lt":
        result = col < rhs
    else:
        result = col <= rhs
    return result


def _as_scalar(value: Operand) -> Scalar:
    assert not isinstance(value, FieldRef | tuple)
    return value


def _as_tuple(value: Operand) -> tuple[Scalar, ...]:
    assert isinstance(value, tuple)
    return value


# --------------------------------------------------------------------------- Python


def evaluate_filter(node: FilterNode | None, record: Mapping[str, object]) -> bool:
    """Whether `record` matches, with the same meaning as `compile_filter` in SQL.

    A missing key is the same as None. Values of types that cannot be compared
    (a number against a string, say) do not match a positive condition.
    """
    if node is None:
        return True
    if isinstance(node, Not):
        return not evaluate_filter(node.item, record)
    if isinstance(node, And):
        return all(evaluate_filter(item, record) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate_filter(item, record) for item in node.items)
    return _evaluate_condition(node, record)


def _evaluate_condition(cond: Condition, record: Mapping[str, object]) -> bool:
    actual = record.get(cond.field)
    op, value = cond.op, cond.value

    if op == "is_null":
        return actual is None
    if op == "is_not_null":
        return actual is not None
    if op in ("is_empty", "is_not_empty"):
        empty = actual is None or actual == "" or (isinstance(actual, list | tuple) and not actual)
        return empty == (op == "is_empty")
    if op in ("eq", "ne"):
        if isinstance(value, FieldRef):
            other = record.get(value.name)
            if actual is None or other is None:
                equal = actual is None and other is None
            else:
                equal = _equal(actual, other)
        else:
            equal = actual is not None and _equal(actual, value)
        return equal == (op == "eq")
    if op in ORDERING_OPS:
        rhs = record.get(value.name) if isinstance(value, FieldRef) else value
        return actual is not None and rhs is not None and _compare(op, actual, rhs)
    if op == "between":
        low, high = _as_tuple(value)
        return actual is not None and _compare("gte", actual, low) and _compare("lte", actual, high)
    if op in LIST_OPS:
        members = _as_tuple(value)
        if actual is None:
            inside = any(m is None for m in members)
        else:
            inside = any(m is not None and _equal(actual, m) for m in members)
        return inside == (op == "in")
    if op in TEXT_OPS:
        if not isinstance(actual, str):
            return op == "not_contains"
        text = str(value)
        if op == "contains":
            return text in actual
        if op == "not_contains":
            return text not in actual
        if op == "starts_with":
            return actual.startswith(text)
        if op == "ends_with":
            return actual.endswith(text)
        return _like_regex(text).fullmatch(actual) is not None
    raise AssertionError(f"unhandled operator {op}")  # pragma: no cover


def _parse_temporal(text: str, kind: type) -> datetime | date | time | None:
    try:
        if kind is datetime:
            return datetime.fromisoformat(text)
        if kind is date:
            return date.fromisoformat(text)
        return time.fromisoformat(text)
    except ValueError:
        return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _comparable(a: object, b: object) -> tuple[Any, Any] | None:
    """The pair in a form Python can compare, or None when it cannot be compared."""
    numbers = (int, float, Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    for kind in (datetime, date, time):
        # datetime is a date subclass, so it is tried first.
        if isinstance(a, kind) and isinstance(b, str):
            b = _parse_temporal(b, kind)
        elif isinstance(b, kind) and isinstance(a, str):
            a = _parse_temporal(a, kind)
        else:
            continue
        if a is None or b is None:
            return None
        break
    if isinstance(a, datetime) and isinstance(b, datetime):
        return _utc(a), _utc(b)
    if type(a) is type(b):
        return a, b
    return None


def _equal(a: object, b: object) -> bool:
    pair = _comparable(a, b)
    return pair is not None and bool(pair[0] == pair[1])


def _compare(op: str, a: object, b: object) -> bool:
    pair = _comparable(a, b)
    if pair is None:
        return False
    x, y = pair
    try:
        if op == "gt":
            return bool(x > y)
        if op == "gte":
            return bool(x >= y)
        if op == "lt":
            return bool(x < y)
        return bool(x <= y)
    except TypeError:
        return False
