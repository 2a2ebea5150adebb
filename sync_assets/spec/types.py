"""Scalar types with the official parser's strictness: no coercion, no nulls, safe integers.

zod (which `@objectstack/spec` validates with) never coerces: `"100"` is not a number and `true`
is not an integer. JavaScript cannot tell `100` from `100.0`, so an integral float is an integer
here too. `null` is rejected wherever a field is optional or has a default; only the spec's
`unknown` slots (filters, constant values, defaults, ast, metadata values) take it.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel as _PydanticBase
from pydantic import BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

MAX_SAFE_INTEGER = 9007199254740991
"""JavaScript's Number.MAX_SAFE_INTEGER: zod's `.int()` accepts nothing beyond it."""


def json_type_name(value: object) -> str:
    """The JSON name of a Python value's type, for messages a business user can read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _reject_null(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must not be null")
    return value


def _integral(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must not be null")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


NotNull = BeforeValidator(_reject_null)


def _finite_number(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must not be null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "number_type", "must be a number (got {got})", {"got": json_type_name(value)}
        )
    # JavaScript reads an integer beyond the double range as Infinity, which zod refuses.
    if not math.isfinite(float(value) if abs(value) < 1e308 else math.inf):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return value


Number = Annotated[int | float, BeforeValidator(_finite_number)]


def _drop_proto(value: object) -> object:
    # zod's records skip `__proto__` (a prototype-pollution guard): never validated or kept.
    if isinstance(value, dict) and "__proto__" in value:
        return {k: v for k, v in value.items() if k != "__proto__"}
    return value


DropProto = BeforeValidator(_drop_proto)

OptStr = Annotated[str | None, NotNull]
OptBool = Annotated[bool | None, NotNull]
StrList = Annotated[list[Annotated[str, Strict()]] | None, NotNull]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1)]


@cache
def _spec_defaults(model: type[_PydanticBase]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if not info.is_required() and info.get_default(call_default_factory=True) is not None
    )


def SafeInt(ge: int = -MAX_SAFE_INTEGER, le: int = MAX_SAFE_INTEGER) -> Any:
    """An integer in [ge, le], integral floats allowed, booleans and strings refused."""
    return Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=ge, le=le)]


class SpecModel(_PydanticBase):
    """Base of every protocol shape.

    Unknown keys are dropped (zod's default `strip`). `to_spec()` emits the keys the input set
    plus every key with a spec default, which is exactly what the official parse returns.
    """

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        populate_by_name=False,
        frozen=True,
        validate_default=False,
    )

    def model_post_init(self, context: Any, /) -> None:
        # A non-None default is a spec default (zod `.default(...)`): it counts as set so that
        # exclude_unset keeps it, like zod's output does. None marks an optional key.
        self.__pydantic_fields_set__.update(_spec_defaults(type(self)))

    def to_spec(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict the official `@objectstack/spec` parse returns."""
        # Python mode: every value is JSON-native already, and json mode would mangle a lone
        # surrogate in a dict key.
        return self.model_dump(mode="python", by_alias=True, exclude_unset=True)
