"""Record identity and change detection: keys and fingerprints of mapped records.

A record's key is the JSON of its match-key values; its fingerprint hashes the mapped values
only, so a change to an unmapped column is no change at all.

A fingerprint is the BLAKE2b-128 of the record's payload: every mapped value as a tagged
canonical text (`canonical`), each prefixed by its length so no two records share a payload.
The Arrow lane (`columnar.py`) builds the same payloads from Arrow arrays without a Python
object per value; both must agree value for value, which tests/test_columnar.py checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from json.encoder import encode_basestring as _encode_str  # the C encoder
from typing import Any
from uuid import UUID

from ..spec.values import plain


def record_key(values: Sequence[Any]) -> str:
    """The JSON of the key values: `["a@x.io"]`, `[7]`, `["eu",7]`."""
    if len(values) == 1:  # the common case, without the generic encoder's overhead
        v = values[0]
        if type(v) is str:
            return "[" + _encode_str(v) + "]"
        if type(v) is int:
            return f"[{v}]"
    return json.dumps([plain(v) for v in values], separators=(",", ":"), ensure_ascii=False)


_EPOCH = datetime(1970, 1, 1)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)


def canonical(value: Any) -> str:
    """The text a value is fingerprinted by: a type tag and the `plain` form, so 1 and "1"
    differ and None differs from every text. Instants are microseconds since 1970 (UTC for
    zone-aware values) and dates days since 1970: what Arrow holds, so the Arrow lane needs
    no date formatting."""
    kind = type(value)  # the common types first: this runs for every value fingerprinted
    if kind is str:
        return "s" + value
    if value is None:
        return "n"
    if kind is int:
        return f"i{value}"
    if kind is bool:
        return "b1" if value else "b0"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return f"t{(value - _EPOCH) // _MICROSECOND}"
    if isinstance(value, date):
        return f"d{value.toordinal() - _EPOCH_DAY}"
    value = plain(value)
    if value is None:
        return "n"
    if value is True:
        return "b1"
    if value is False:
        return "b0"
    if type(value) is str:
        return "s" + value
    if type(value) is int:
        return f"i{value}"
    return "j" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload(texts: Sequence[str]) -> str:
    """A record's canonical texts as one unambiguous string: `len:text` for each."""
    return "".join([f"{len(t)}:{t}" for t in texts])


def digests(payloads: Iterable[str]) -> list[str]:
    """The fingerprint of each payload."""
    blake = hashlib.blake2b
    return [blake(p.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
            for p in payloads]


def utf8_digests(payloads: Iterable[bytes]) -> list[str]:
    """`digests` of payloads given as their UTF-8 bytes (as Arrow holds them)."""
    blake = hashlib.blake2b
    return [blake(p, digest_size=16).hexdigest() for p in payloads]


def fingerprints(records: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> list[str]:
    """The fingerprints of mapped records: equal values (after `plain`), equal fingerprints."""
    return digests(payload([canonical(r.get(f)) for f in fields]) for r in records)


def fingerprint(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    return fingerprints([record], fields)[0]


def same_values(stored: Mapping[str, Any], new: Mapping[str, Any], fields: Sequence[str],
                kinds: Mapping[str, str] | None = None) -> bool:
    """Whether the destination already holds `new`: every field equal, read as the
    destination's column (its portable kind) would store it, so an integer bound for a text
    column equals the '7' it holds there and is not rewritten on every full refresh."""
    kinds = kinds or {}
    return all(same_value(stored.get(f), new.get(f), kinds.get(f)) for f in fields)


_TRUE, _FALSE = frozenset({"1", "true", "t", "yes"}), frozenset({"0", "false", "f", "no"})


def same_value(stored: Any, new: Any, kind: str | None) -> bool:
    a, b = plain(stored), plain(new)
    if a == b:
        return True
    if a is None or b is None or kind is None:
        return False
    try:
        if kind == "text":
            if isinstance(new, date | dt_time):  # stored as ISO text, either separator
                return _instant(a) == _instant(b)
            if isinstance(new, int | float | Decimal) and not isinstance(new, bool):
                return Decimal(str(a)) == Decimal(str(b))  # '0.50' holds Decimal('0.5')
            if isinstance(new, dict | list):  # JSON in a text column, in any spacing
                return isinstance(a, str) and json.loads(a) == b
            if isinstance(new, UUID):  # a UUID in a text column, with or without dashes
                return UUID(str(a)) == new
            text = b if isinstance(b, str) else json.dumps(b, separators=(",", ":"))
            if isinstance(b, bool):
                return str(a).lower() in (_TRUE if b else _FALSE)
            return str(a) == text
        if kind in ("integer", "decimal", "float"):
            return Decimal(str(a)) == Decimal(str(b))
        if kind == "boolean":
            return str(a).lower() in (_TRUE if str(b).lower() in _TRUE else _FALSE)
        if kind == "json":
            return json.loads(a) == b if isinstance(a, str) else a == json.loads(b)
        if kind in ("datetime", "date", "time"):
            return _instant(a) == _instant(b)
    except (ValueError, ArithmeticError, TypeError):
        return False
    return False


def _instant(text: Any) -> Any:
    """A date or time in ISO text, in either separator or precision, as one value."""
    value = str(text).replace(" ", "T")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return value
