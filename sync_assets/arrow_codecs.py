"""Arrow arrays of the values a fast lane carries encoded: JSON as its text (the `arrow.json`
extension type), UUIDs as their 16 bytes (`arrow.uuid`), binary as bytes; and the text forms
databases exchange them in (PostgreSQL's `\\x` hex for bytea, hyphenated UUIDs), converted a
buffer at a time with numpy rather than a Python object per value.

Both sides of the lane use these: a connector parses what its database sends and renders what
it takes, the engine fingerprints (`columnar.py`) and turns a page into records
(`values_of`), so a page carries one form of each value whoever reads it.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i
# each byte's two hex digits as one uint16 (in memory order), so a buffer is hexed by one
# gather rather than two shifts and two strided writes
_HEX_PAIRS = np.array([[d >> 4, d & 15] for d in range(256)], dtype=np.uint8)
_HEX_PAIRS = _HEX_DIGITS[_HEX_PAIRS].view(np.uint16).reshape(-1)
_UUID_DASHES = (8, 13, 18, 23)
_UUID_HEX = np.array([i for i in range(36) if i not in _UUID_DASHES])


def is_json(t: pa.DataType) -> bool:
    return isinstance(t, pa.JsonType)


def is_uuid(t: pa.DataType) -> bool:
    return isinstance(t, pa.UuidType)


def is_binary(t: pa.DataType) -> bool:
    """Bytes that are not a UUID: binary, large binary, fixed-size binary."""
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or (pa.types.is_fixed_size_binary(t) and not is_uuid(t)))


def whole(arr: Any) -> pa.Array:
    """An array, chunked or not, as one array."""
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _validity(arr: pa.Array) -> pa.Buffer | None:
    """A validity bitmap starting at the array's first value (its own may be offset)."""
    if not arr.null_count:
        return None
    return pc.is_valid(arr).buffers()[1]


def _strings(n: int, offsets: np.ndarray, data: np.ndarray, validity: pa.Buffer | None,
             null_count: int) -> pa.Array:
    large = offsets[-1] >= 2**31 if len(offsets) else False
    type_ = pa.large_string() if large else pa.string()
    offsets = offsets.astype(np.int64 if large else np.int32)
    return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(offsets),
                                            pa.py_buffer(data)], null_count)


def _hexed(raw: np.ndarray) -> np.ndarray:
    return _HEX_PAIRS[raw].view(np.uint8)


def _bytes_of(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (from 0) and the bytes of a binary or string array."""
    t = arr.type
    if pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        data = np.frombuffer(arr.buffers()[1], dtype=np.uint8) if len(arr) else np.empty(
            0, np.uint8)
        raw = data[arr.offset * width:(arr.offset + len(arr)) * width]
        return np.arange(len(arr) + 1, dtype=np.int64) * width, raw
    wide = pa.types.is_large_binary(t) or pa.types.is_large_string(t)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)[
        arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    data = arr.buffers()[2]
    raw = (np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None
           else np.empty(0, np.uint8))
    return offsets - offsets[0], raw


def hex_text(arr: Any, prefix: str = "") -> pa.Array:
    """Each value's bytes as lowercase hex after `prefix` (PostgreSQL's bytea text is
    `\\x` and the hex), nulls kept."""
    arr = whole(arr)
    if is_uuid(arr.type):
        arr = arr.storage
    n = len(arr)
    offsets, raw = _bytes_of(arr)
    # the values' hex, back to back, is the data's hex
    texts = _strings(n, 2 * offsets, _hexed(raw), _validity(arr), arr.null_count)
    return pc.binary_join_element_wise(prefix, texts, "") if prefix else texts


def from_hex(texts: Any, prefix: str = "") -> pa.Array:
    """Binary values from their hex text after `prefix`; ValueError for any other text."""
    texts = whole(texts)
    validity, nulls = _validity(texts), texts.null_count
    filled = whole(pc.fill_null(texts, prefix)) if nulls else texts
    n = len(filled)
    offsets, raw = _bytes_of(filled)
    lengths = np.diff(offsets) - len(prefix)
    if n and (lengths.min() < 0 or (lengths % 2).any()):
        raise ValueError("not hex text")
    keep = np.ones(len(raw), dtype=bool)
    if prefix and n:
        starts = offsets[:-1, None] + np.arange(len(prefix))
        if (raw[starts] != np.frombuffer(prefix.encode(), dtype=np.uint8)).any():
            raise ValueError(f"hex text does not start with {prefix!r}")
        keep[starts] = False
    nibbles = _NIBBLE[raw[keep]]
    if (nibbles == 255).any():
        raise ValueError("not hex text")
    out = (nibbles[0::2] << 4) | nibbles[1::2]
    out_offsets = np.concatenate([[0], np.cumsum(lengths // 2)]).astype(np.int64)
    large = out_offsets[-1] >= 2**31
    return pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(), n,
        [validity, pa.py_buffer(out_offsets.astype(np.int64 if large else np.int32)),
         pa.py_buffer(out.astype(np.uint8))], nulls)


def uuid_text(arr: Any) -> pa.Array:
    """UUIDs as their hyphenated lowercase text (`str(uuid)`), nulls kept."""
    arr = whole(arr)
    storage = arr.storage if is_uuid(arr.type) else arr
    n = len(storage)
    _, raw = _bytes_of(storage)
    hexed = _hexed(raw).reshape(n, 32)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_HEX] = hexed
    return _strings(n, np.arange(n + 1, dtype=np.int64) * 36, out.reshape(-1),
                    _validity(storage), storage.null_count)


def uuids(texts: Any) -> pa.Array:
    """An `arrow.uuid` array from UUID texts (hyphenated or 32 hex digits, either case);
    ValueError for a text that is no UUID."""
    texts = whole(texts)
    validity, nulls = _validity(texts), texts.null_count
    zero = "00000000-0000-0000-0000-000000000000"
    filled = whole(pc.fill_null(texts, zero)) if nulls else texts
    n = len(filled)
    offsets, raw = _bytes_of(filled)
    lengths = np.diff(offsets)
    if n and (lengths == 36).all():
        grid = raw.reshape(n, 36)
        if (grid[:, list(_UUID_DASHES)] != ord("-")).any():
            raise ValueError("not a UUID")
        digits = grid[:, _UUID_HEX].reshape(-1)
    elif n and (lengths == 32).all():
        digits = raw
    else:  # braces, URNs, mixed forms: Python's parser, which takes all of them
        values = [None if v is None else UUID(v).bytes for v in filled.to_pylist()]
        storage = pa.array(values, pa.binary(16))
        return pa.ExtensionArray.from_storage(pa.uuid(), _masked(storage, texts))
    nibbles = _NIBBLE[digits]
    if (nibbles == 255).any():
        raise ValueError("not a UUID")
    out = ((nibbles[0::2] << 4) | nibbles[1::2]).astype(np.uint8)
    storage = pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(out)], nulls)
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def _masked(values: pa.Array, like: pa.Array) -> pa.Array:
    if not like.null_count:
        return values
    return pc.if_else(pc.is_valid(like), values, pa.scalar(None, values.type))


def json_array(texts: Any) -> pa.Array:
    """An `arrow.json` array holding these JSON texts, JSON's null as a null: the drivers
    decode it to None, which the record path writes as SQL NULL."""
    texts = whole(texts).cast(pa.string())
    is_null = pc.equal(pc.utf8_trim_whitespace(texts), "null")
    if pc.any(is_null).as_py():
        texts = pc.if_else(is_null, pa.scalar(None, pa.string()), texts)
    return pa.ExtensionArray.from_storage(pa.json_(), texts)


def json_storage(arr: Any) -> pa.Array:
    """The JSON texts of an `arrow.json` array (chunked or not) as one string array."""
    return whole(arr).storage


def c_iterencode(encoder: json.JSONEncoder) -> Any:
    """What `encoder.encode` builds for each call, built once: CPython's C encoder with the
    encoder's settings, called as `iterencode(value, 0)` (no circular check: a decoded
    document has no cycles); the encoder's own `iterencode` where there is no C encoder."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return encoder.iterencode
    quote = (json.encoder.encode_basestring_ascii if encoder.ensure_ascii
             else json.encoder.encode_basestring)
    return make(None, encoder.default, quote, None, encoder.key_separator,
                encoder.item_separator, encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)


def json_values(arr: Any) -> list[Any]:
    """The decoded values of an `arrow.json` array (SQL NULL and JSON null both None)."""
    loads = json.loads
    return [None if v is None else loads(v) for v in json_storage(arr).to_pylist()]


def values_of(table: pa.Table) -> list[dict[str, Any]]:
    """A table's rows as records: `to_pylist`, with JSON decoded (UUIDs and bytes are
    already Python's own there)."""
    rows = table.to_pylist()
    for i, field in enumerate(table.schema):
        if is_json(field.type):
            name = field.name
            for row, value in zip(rows, json_values(table.column(i)), strict=True):
                row[name] = value
    return rows
