"""Expression envelopes: `{dialect, source?, ast?, meta?}`, and the string shorthand.

A bare string is shorthand whose dialect depends on the slot: `cron` for a schedule, `cel` for
a validation condition or a transform expression. The official parser rewrites the shorthand
into the envelope, so `to_spec()` does too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .types import NotNull, OptStr, SpecModel

Dialect = Literal["cel", "cron", "template"]


class ExpressionMeta(SpecModel):
    rationale: OptStr = None
    generatedBy: OptStr = None


class Expression(SpecModel):
    dialect: Dialect
    source: Annotated[str | None, NotNull, Field(min_length=1)] = None
    ast: Any = None
    meta: Annotated[ExpressionMeta | None, NotNull] = None

    @model_validator(mode="after")
    def _source_or_ast(self) -> Expression:
        # `ast: null` counts as given: zod checks `!== undefined`.
        if "source" not in self.model_fields_set and "ast" not in self.model_fields_set:
            raise PydanticCustomError(
                "expression_empty", "an expression needs at least one of `source` or `ast`"
            )
        return self


def _shorthand(dialect: str) -> Any:
    def expand(value: object) -> object:
        if value is None:
            raise PydanticCustomError("null_not_allowed", "must not be null")
        if isinstance(value, str):
            if not value:
                raise PydanticCustomError(
                    "expression_blank",
                    "must be a non-empty string or an expression object {dialect, source}",
                )
            return {"dialect": dialect, "source": value}
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "expression_type",
                "must be a non-empty string or an expression object {dialect, source}",
            )
        return value

    return BeforeValidator(expand)


CronExpressionInput = Annotated[Expression, _shorthand("cron")]
CelExpressionInput = Annotated[Expression, _shorthand("cel")]
