"""The Arrow lane: record keys and fingerprints computed a column at a time.

A batch read as an Arrow table (see connectors/arrow.py) is keyed and fingerprinted here
without turning its rows into Python objects. The results are exactly those of
`records.record_key` and `records.fingerprints` on the same values, so a sync's state is the
same whichever lane wrote it; types the vectorised code does not know go through
`records.canonical` value by value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from .. import arrow_codecs as codecs
from .records import canonical, record_key, utf8_digests

# what json's encode_basestring escapes (the C encoder record_key uses, non-ASCII kept)
_JSON_SPECIAL = r'["\\\x00-\x1f]'


def _tag(tag: str, texts: Any) -> Any:
    return pc.binary_join_element_wise(tag, texts, "")


def canonical_texts(arr: Any) -> Any:
    """`records.canonical` of every value of an Arrow array, as an Arrow string array."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        texts = _tag("s", arr)
    elif pa.types.is_integer(t):
        texts = _tag("i", arr.cast(pa.string()))
    elif pa.types.is_boolean(t):
        texts = pc.if_else(arr, "b1", "b0")
    elif pa.types.is_timestamp(t) and t.unit in ("s", "ms", "us"):
        # a zone-aware array holds UTC instants: dropping the zone keeps them
        texts = _tag("t", arr.cast(pa.timestamp("us")).cast(pa.int64()).cast(pa.string()))
    elif pa.types.is_date32(t):
        texts = _tag("d", arr.cast(pa.int32()).cast(pa.string()))
    elif pa.types.is_decimal128(t) and t.scale >= 0:
        texts = _decimal_texts(arr)
    elif pa.types.is_floating(t):
        texts = _float_texts(arr)
    elif pa.types.is_time(t) and t.unit in ("s", "ms", "us"):
        # Arrow's text always has six fraction digits, isoformat none for a whole second
        texts = arr.cast(pa.time64("us")).cast(pa.string())
        texts = _tag("s", pc.if_else(pc.ends_with(texts, ".000000"),
                                     pc.utf8_slice_codeunits(texts, 0, 8), texts))
    elif codecs.is_uuid(t):  # `plain` gives a UUID's text, bytes their hex
        texts = _tag("s", codecs.uuid_text(arr))
    elif codecs.is_binary(t):
        texts = _tag("s", codecs.hex_text(arr))
    elif codecs.is_json(t):
        return _json_texts(arr)
    else:
        return pa.array([canonical(v) for v in arr.to_pylist()], pa.string())
    return pc.fill_null(texts, "n")


_SAFE_INT = 2**53
_SAFE_DIGITS = len(str(_SAFE_INT))


def unscaled(arr: Any) -> Any:
    """The unscaled integers of a decimal128 array of at most 18 digits, as int64: the low
    64 bits of each 128-bit little-endian value (the high ones are only its sign)."""
    import numpy as np

    arr = codecs.whole(arr)
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    low = words[2 * arr.offset: 2 * (arr.offset + len(arr)): 2]
    return pa.array(low, pa.int64(), mask=arr.is_null().to_numpy(zero_copy_only=False))


def _decimal_texts(arr: Any) -> Any:
    """`canonical` of decimals, from their unscaled integers' text (Arrow's own text of a
    decimal turns to exponents for small values): `plain` gives a whole number below 2**53
    as an int ("i12"), any other as its normalized text ("s12.5", "s-0.001")."""
    scale = arr.type.scale
    arr = codecs.whole(arr)
    if arr.type.precision <= 18:  # the integers fit int64, whose text Arrow writes faster
        number = unscaled(arr)
        negative, digits = pc.less(number, 0), pc.abs(number).cast(pa.string())
    else:
        signed = arr.view(pa.decimal128(38, 0)).cast(pa.string())  # the same 128-bit ints
        negative, digits = pc.starts_with(signed, "-"), pc.utf8_ltrim(signed, "-")
    if scale > 0:
        digits = pc.utf8_lpad(digits, scale + 1, "0")
        whole = pc.utf8_slice_codeunits(digits, 0, -scale)
        fraction = pc.utf8_rtrim(pc.utf8_slice_codeunits(digits, -scale, 2**31 - 1), "0")
        has_fraction = pc.greater(pc.utf8_length(fraction), 0)
    else:
        whole, fraction = digits, pc.utf8_slice_codeunits(digits, 0, 0)
        has_fraction = pc.equal(negative, pc.invert(negative))  # all false, nulls kept
    # below 2**53: fewer digits than it has, or as many and less (texts of one length
    # order as their numbers); a negative number is never "0", so its sign goes first
    length = pc.utf8_length(whole)
    small = pc.or_(pc.less(length, _SAFE_DIGITS),
                   pc.and_(pc.equal(length, _SAFE_DIGITS), pc.less(whole, str(_SAFE_INT))))
    tag = pc.if_else(pc.and_(pc.invert(has_fraction), small), "i", "s")
    return pc.binary_join_element_wise(tag, pc.if_else(negative, "-", ""), whole,
                                       pc.if_else(has_fraction, ".", ""), fraction, "")



def _float_texts(arr: Any) -> Any:
    """`canonical` of floats: a whole number below 2**53 as an int, any other as `repr`.
    Arrow's text of a double has repr's shortest digits; where both write them without an
    exponent (from 1e-4 on, and below 1e10 where Arrow turns to exponents) the texts are
    the same, and the rest, few in data people have, go through `repr`."""
    arr = codecs.whole(arr)
    arr = arr.cast(pa.float64())  # a float32's value as Python holds it, a double
    magnitude = pc.abs(arr)
    whole = pc.and_(pc.is_finite(arr), pc.equal(pc.floor(arr), arr))
    as_int = pc.and_(whole, pc.less(magnitude, float(_SAFE_INT)))
    ints = _tag("i", pc.if_else(as_int, arr, 0.0).cast(pa.int64()).cast(pa.string()))
    texts = arr.cast(pa.string())
    other = pc.and_(pc.invert(as_int), pc.or_(
        pc.less(magnitude, 1e-4), pc.match_substring(texts, "e")))
    other = pc.fill_null(other, False)
    if pc.any(other).as_py():
        texts = pc.replace_with_mask(texts, other, pa.array(
            [repr(v) for v in arr.filter(other).to_pylist()], pa.string()))
    return pc.if_else(as_int, ints, _tag("s", texts))


def _json_texts(arr: Any) -> Any:
    """`canonical` of JSON documents, each distinct text once. Floats are made `plain` as
    they are parsed, so a decoded document is already in the form `canonical` encodes."""
    encoded = codecs.json_storage(arr).dictionary_encode()
    # a document whose float texts are all `plain` already keeps them as they are written,
    # and msgspec reads and writes it (about 3x Python's C scanner and encoder). It takes
    # what Python's reader takes but NaN, infinities, lone surrogates and deep nesting;
    # those, and documents with other float texts, go Python's way.
    odd = pc.match_substring_regex(encoded.dictionary, _UNPLAIN_FLOATS).to_pylist()
    texts: list[bytes] = []
    fast_decode, fast_encode = _FAST_DECODER.decode, _FAST_ENCODER.encode
    for text, slow in zip(encoded.dictionary.to_pylist(), odd, strict=True):
        if not slow:
            try:
                value = fast_decode(text)
                texts.append(b"j" + fast_encode(value) if type(value) in (dict, list)
                             else canonical(value).encode())
                continue
            except (msgspec.MsgspecError, RecursionError):
                pass  # Python's reader takes it or says why not, as the record path would
        value = _python_decoded(text)
        texts.append(("j" + "".join(_JSON_ITERENCODE(value, 0)) if type(value) in (dict, list)
                      else canonical(value)).encode())
    # every text is UTF-8 (msgspec writes it, `encode` refuses a lone surrogate)
    decoded = pa.array(texts, pa.binary()).view(pa.string())
    return pc.fill_null(pc.take(decoded, encoded.indices), "n")


def _python_decoded(text: str) -> Any:
    """A document as Python's reader gives it, floats made `plain`: the C scanner called
    straight (`decode` wraps it in whitespace matching), `decode` where the text has
    whitespace around it or is no JSON (which it reports)."""
    try:
        value, end = _JSON_DECODER.scan_once(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else _JSON_DECODER.decode(text)


def _plain_float(text: str) -> Any:
    value = float(text)  # what `plain` makes of it, without its dispatch on the type
    if math.isfinite(value) and value.is_integer() and abs(value) < _SAFE_INT:
        return int(value)
    return repr(value)


# Infinity, -Infinity and NaN (which Python's JSON reads) are floats as well
_JSON_DECODER = json.JSONDecoder(parse_float=_plain_float, parse_constant=_plain_float)
# A float text is `plain` (its own repr, not a whole number) where it has at most 15
# significant digits (a double gives back any 15 digits, so repr writes these), ends in a
# fraction digit other than 0, has no exponent, and is at least 1e-4 (repr writes smaller
# ones with an exponent). Documents with a text that may not be, anywhere (strings too,
# which only costs the slow way), are read by `_JSON_DECODER`. A number starts a document
# or follows whitespace, `[`, `,` or `:`, so an escape such as \u00e9 is no exponent.
_UNPLAIN_FLOATS = (r"(^|[\s,:\[])-?[0-9]+(\.[0-9]+)?[eE]|\.[0-9]*0([^0-9]|$)|0\.0000"
                   r"|[1-9](\.?[0-9]){15}")
# floats kept as their texts (`plain` as the regex above tells); sorted keys and no
# whitespace, as `_JSON_ENCODER`, and non-ASCII kept, as ensure_ascii=False keeps it
_FAST_DECODER = msgspec.json.Decoder(float_hook=str)
_FAST_ENCODER = msgspec.json.Encoder(order="sorted")
_JSON_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_JSON_ITERENCODE = codecs.c_iterencode(_JSON_ENCODER)


def payloads(table: pa.Table, fields: Sequence[str]) -> Any:
    """`records.payload` of every row over these columns."""
    pieces: list[Any] = []
    for f in fields:
        texts = canonical_texts(table.column(f))
        pieces += [pc.utf8_length(texts).cast(pa.string()), ":", texts]
    if not pieces:
        return pa.array([""] * table.num_rows, pa.string())
    return pc.binary_join_element_wise(*pieces, "")  # one pass over every column's texts


def values(arr: Any) -> list[Any]:
    """An array's values as the record path has them (JSON decoded)."""
    return codecs.json_values(arr) if codecs.is_json(arr.type) else arr.to_pylist()


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """A page's records, as the record path has them (JSON decoded)."""
    return codecs.values_of(table)


def fingerprints(table: pa.Table, fields: Sequence[str]) -> list[str]:
    """`records.fingerprints` of the table's rows over these columns."""
    # the payloads' UTF-8 bytes straight from Arrow (`digests` would encode each str)
    return utf8_digests(payloads(table, fields).cast(pa.binary()).to_pylist())


def record_keys(table: pa.Table, fields: Sequence[str]) -> list[str]:
    """`records.record_key` of every row's values of these columns (none may be null)."""
    if len(fields) == 1:
        arr = table.column(fields[0])
        t = arr.type
        if pa.types.is_integer(t):
            return pc.binary_join_element_wise("[", arr.cast(pa.string()), "]", "").to_pylist()
        if codecs.is_uuid(t):
            return pc.binary_join_element_wise('["', codecs.uuid_text(arr), '"]',
                                               "").to_pylist()
        if ((pa.types.is_string(t) or pa.types.is_large_string(t))
                and not pc.any(pc.match_substring_regex(arr, _JSON_SPECIAL)).as_py()):
            return pc.binary_join_element_wise('["', arr, '"]', "").to_pylist()
    columns = [values(table.column(f)) for f in fields]
    return [record_key(values) for values in zip(*columns, strict=True)]
