"""SyncConfigError, and turning validation errors into `path: message` lines a person can act on.

Messages never repeat a rejected value unless it is a name or a choice (a sync name, an enum):
a config may carry secrets expanded from the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .mapping import MAPPING_FORM_TAGS
from .types import json_type_name

_TRANSFORM_TAGS = frozenset({"constant", "cast", "lookup", "javascript", "map"})
PathPart = str | int

#: control characters and line separators as escapes (`\n`, `\x1b`, `\u2028`): a problem is
#: one line of text whatever a key or a value holds, and cannot drive the terminal
_ESCAPES = {
    code: ascii(chr(code))[1:-1]
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def format_path(parts: Sequence[PathPart]) -> str:
    """`("syncs", 0, "destination", "matchKey", 1)` -> `syncs[0].destination.matchKey[1]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where it is and what is allowed instead."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.path}: {self.message}".translate(_ESCAPES)


class SyncConfigError(ValueError):
    """A config the protocol or this engine cannot accept; lists every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, message: str, file: str | None = None) -> SyncConfigError:
        return cls([Problem(path, message, file)])


def _clean_loc(loc: Sequence[PathPart]) -> tuple[PathPart, ...]:
    """Drop the union tags pydantic adds to locations; users never wrote them."""
    out: list[PathPart] = []
    for i, part in enumerate(loc):
        if part in MAPPING_FORM_TAGS:
            continue
        if (
            part in _TRANSFORM_TAGS
            and i > 0
            and loc[i - 1] == "transform"
            and i < len(loc) - 1
        ):
            continue
        out.append(part)
    return tuple(out)


def _choices(expected: str) -> str:
    return ", ".join(c.strip().strip("'") for c in expected.replace(" or ", ",").split(","))


def describe(err: ErrorDetails) -> str:
    """One readable sentence for a pydantic error."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = json_type_name(value)
    if kind == "missing":
        return "is required"
    if kind == "null_not_allowed" or (value is None and "input" in err):
        return "must not be null (leave the key out instead)"
    if kind == "literal_error":
        shown = f"'{value}'" if isinstance(value, str) else got
        return f"must be one of {_choices(str(ctx.get('expected', '')))} (got {shown})"
    if kind == "union_tag_invalid":
        return (
            f"type must be one of {_choices(str(ctx.get('expected_tags', '')))} "
            f"(got '{ctx.get('tag')}')"
        )
    if kind == "union_tag_not_found":
        return "needs a `type`: one of constant, cast, lookup, javascript, map"
    if kind == "string_pattern_mismatch":
        shown = f" (got {value!r})" if isinstance(value, str) else ""
        return (
            "must be snake_case: a lowercase letter or _ then lowercase letters, digits or _"
            + shown
        )
    if kind in {"string_too_short", "too_short"}:
        return "must not be empty"
    if kind in {"string_type"}:
        return f"must be a string (got {got})"
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        shown = repr(value) if got == "number" else got
        return f"must be a whole number (got {shown})"
    if kind in {"number_type"}:
        return str(err["msg"])
    if kind in {"float_type", "finite_number"}:
        return f"must be a finite number (got {got})"
    if kind == "bool_type":
        return f"must be true or false (got {got})"
    if kind in {"list_type"}:
        return f"must be a list (got {got})"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"must be an object (got {got})"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')} (got {value})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')} (got {value})"
    msg = err["msg"]
    return msg[0].lower() + msg[1:] if msg else kind


def problems_from_validation(
    exc: ValidationError, prefix: Sequence[PathPart] = ()
) -> list[tuple[tuple[PathPart, ...], str]]:
    """(path parts, message) for each error, with union noise removed and duplicates merged."""
    seen: dict[tuple[PathPart, ...], list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = (*prefix, *_clean_loc(err["loc"]))
        msg = describe(err)
        bucket = seen.setdefault(loc, [])
        if msg not in bucket:
            bucket.append(msg)
    return [(loc, "; ".join(msgs)) for loc, msgs in seen.items()]
