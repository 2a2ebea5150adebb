"""Arrow types as the connectors that read Arrow data see them (files, an upstream asset's
table): the portable kind of each, and the one type a column is read as whatever wrote it."""

from __future__ import annotations

import pyarrow as pa


def kind_of(t: pa.DataType) -> str:
    """The portable kind of an Arrow type."""
    if pa.types.is_dictionary(t):
        return kind_of(t.value_type)
    if isinstance(t, pa.JsonType):
        return "json"
    if isinstance(t, pa.UuidType):
        return "uuid"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text"
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_nested(t):
        return "json"
    return "unknown"


def read_type(t: pa.DataType) -> pa.DataType:
    """The type a column is read as: one string type and one timestamp unit whatever built
    the table (pandas gives nanoseconds and, from 3.0, large strings), dictionaries
    (categoricals) decoded, so values are the engine's plain Python values and its columnar
    fingerprints know every type."""
    if pa.types.is_dictionary(t):
        return read_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_null(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t) and t.unit != "us":
        return pa.timestamp("us", t.tz)
    if pa.types.is_time(t) and t.unit != "us":
        return pa.time64("us")
    return t
