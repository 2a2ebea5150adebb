"""The mapping run on an Arrow page a column at a time: renames, constants, defaultValue,
`map` tables over text and the casts that cannot fail, with pyarrow.compute.

Each column operation gives exactly the values `RecordMapper.map` gives record by record
(tests/test_arrow_mapping.py holds them together); where a page holds a type an operation is
not written for here (a cast of a timestamp, a map over numbers), `mapped` gives None and the
page takes the record path, which also reports what cannot be cast. Lookups and expressions
are never column operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..spec.mapping import CastTransform, ConstantTransform, FieldMapping, MapTransform
from .columnar import unscaled

_SCALAR_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def _has_default(m: FieldMapping) -> bool:
    return "defaultValue" in m.model_fields_set


def column_operation(m: FieldMapping) -> bool:
    """Whether this mapping entry can run on a column (given a column of a type it takes)."""
    t = m.transform
    if t is None:
        return not _has_default(m) or type(m.defaultValue) in _SCALAR_TYPES
    if isinstance(t, ConstantTransform):
        return t.value is None or type(t.value) in _SCALAR_TYPES
    if isinstance(t, MapTransform):
        return (not _has_default(m) or type(m.defaultValue) is str) and all(
            type(v) is str for v in t.mappings.values())
    if isinstance(t, CastTransform):
        return not _has_default(m)
    return False


def mapped(entries: Sequence[FieldMapping], page: pa.Table) -> pa.Table | None:
    """The page's mapped records as a table of the target fields, or None where a column's
    type is not one its operation is written for here."""
    columns: list[Any] = []
    for m in entries:
        column = _value(m, page)
        if column is None:
            return None
        columns.append(column)
    return pa.table(columns, names=[m.target for m in entries]) if columns else None


def _value(m: FieldMapping, page: pa.Table) -> Any:
    t = m.transform
    n = page.num_rows
    if isinstance(t, ConstantTransform):
        if t.value is None:
            return pa.nulls(n, pa.string())
        return pa.repeat(pa.scalar(t.value, _SCALAR_TYPES[type(t.value)]), n)
    column = page.column(m.source)
    if _has_default(m):
        default = m.defaultValue
        if _SCALAR_TYPES.get(type(default)) != column.type:
            return None  # a default of another type than the column's: the record path
        column = pc.fill_null(column, pa.scalar(default, column.type))
    if t is None:
        return column
    if isinstance(t, MapTransform):
        if not pa.types.is_string(column.type):
            return None
        keys = list(t.mappings)
        found = pc.index_in(column, value_set=pa.array(keys, pa.string()))
        replaced = pc.take(pa.array([t.mappings[k] for k in keys], pa.string()), found)
        return pc.if_else(pc.is_null(found), column, replaced)
    if isinstance(t, CastTransform):
        return _cast(column, t.targetType)
    return None


def _cast(column: Any, target: str) -> Any:
    """The casts that cannot fail and whose values Arrow gives as `cast_value` does."""
    kind = column.type
    if target == "string":
        if pa.types.is_string(kind):
            return column
        if pa.types.is_integer(kind):
            return column.cast(pa.string())
        if pa.types.is_boolean(kind):
            return pc.if_else(column, "true", "false")
        if pa.types.is_decimal128(kind) and kind.scale <= 6:
            # Arrow writes such decimals in plain digits (not exponents); `plain` drops
            # trailing zeros
            text = column.cast(pa.string())
            return pc.replace_substring_regex(text, r"\.?0+$", "") if kind.scale else text
        return None
    if target == "number" and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column
    if target == "number" and pa.types.is_decimal128(kind) and kind.precision <= 15:
        # an int where the decimal is whole, else its float: below 2**53 a whole float is
        # that int to every later step (fingerprints, a float column)
        # (Arrow's own cast is not correctly rounded: 427.65 became 427.65000000000003)
        whole = pa.chunked_array([unscaled(c) for c in column.chunks], pa.int64()) \
            if isinstance(column, pa.ChunkedArray) else unscaled(column)
        return pc.divide(pc.cast(whole, pa.float64()), float(10**kind.scale))
    if target == "boolean" and pa.types.is_boolean(kind):
        return column
    if target == "date" and pa.types.is_date32(kind):
        return column
    if target == "date" and pa.types.is_timestamp(kind):
        # a zone-aware array holds UTC instants: without its zone, their UTC dates
        return column.cast(pa.timestamp(kind.unit)).cast(pa.date32()) if kind.tz \
            else column.cast(pa.date32())
    return None
