"""Values as the protocol compares and stores them: JSON-ready and stable across databases."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

_AS_IS = frozenset({str, int, bool, type(None)})


def plain(value: Any) -> Any:
    """A JSON-ready, comparison-stable form of a database value."""
    if type(value) in _AS_IS:  # the common case first: this runs for every value synced
        return value
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1.0 from one database and 1 from another are one value
        return repr(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        # not `normalize()`: it rounds to the context's 28 digits, so two numbers of 29
        # digits would be one value
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def shown_cursor(value: Any) -> Any:
    """A cursor as logs, metadata and the CLI show it: a JSON object cursor (a connector's
    own position, such as a files manifest) by its `shown` member, others as `plain`."""
    if isinstance(value, dict) and isinstance(value.get("shown"), str):
        return value["shown"]
    return plain(value)
