"""Field mapping: the `{sourceField: destField}` form, the list form and its five transforms."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Strict, Tag
from pydantic_core import PydanticCustomError

from .expression import CelExpressionInput
from .types import DropProto, NotNull, SpecModel


class ConstantTransform(SpecModel):
    type: Literal["constant"]
    value: Any = Field()  # present, any value, null included


class CastTransform(SpecModel):
    type: Literal["cast"]
    targetType: Literal["string", "number", "boolean", "date"]


class LookupTransform(SpecModel):
    type: Literal["lookup"]
    table: Annotated[str, Strict()]
    keyField: Annotated[str, Strict()]
    valueField: Annotated[str, Strict()]


class JavascriptTransform(SpecModel):
    """Named `javascript` by the spec; its expression is CEL (see README: Expressions)."""

    type: Literal["javascript"]
    expression: CelExpressionInput


class MapTransform(SpecModel):
    type: Literal["map"]
    mappings: Annotated[dict[str, Any], DropProto]


Transform = Annotated[
    ConstantTransform | CastTransform | LookupTransform | JavascriptTransform | MapTransform,
    Field(discriminator="type"),
]


class FieldMapping(SpecModel):
    source: Annotated[str, Strict()]
    target: Annotated[str, Strict()]
    transform: Annotated[Transform | None, NotNull] = None
    defaultValue: Any = None


def _mapping_form(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must not be null")
    if isinstance(value, dict) and "__proto__" in value:
        value = {k: v for k, v in value.items() if k != "__proto__"}
    if not isinstance(value, dict | list):
        raise PydanticCustomError(
            "mapping_type",
            "must be an object {sourceField: destField} or a list of {source, target}",
        )
    return value


RECORD_FORM = "{sourceField: destField}"
LIST_FORM = "[{source, target}]"
MAPPING_FORM_TAGS = frozenset({RECORD_FORM, LIST_FORM})

MappingInput = Annotated[
    Annotated[dict[str, Annotated[str, Strict()]], Tag(RECORD_FORM)]
    | Annotated[list[FieldMapping], Tag(LIST_FORM)],
    Discriminator(lambda v: RECORD_FORM if isinstance(v, dict) else LIST_FORM),
    BeforeValidator(_mapping_form),
]
