"""Keys a sync config holds that the protocol has not.

The official parser drops unknown keys without a word, and so does `parse_sync_config`; a
project file refuses them, as it refuses unknown project and connector keys: a misspelt
`matchkey` or the protocol page's own `connector: salesforce` would otherwise be ignored, and
the sync would run differently from what its author wrote. The raw data is walked along the
models' annotations, so keys are found whether or not the rest of the config is valid.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from ..spec import DataSyncConfig
from ..spec.config import DataDestinationConfig, DataSourceConfig
from ..spec.errors import PathPart

Found = list[tuple[tuple[PathPart, ...], str]]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


def _tag_of(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a model's `type: Literal[...]` field (a transform's discriminator)."""
    field = model.model_fields.get("type")
    annotation = _unwrap(field.annotation) if field is not None else None
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _flatten(annotation: Any) -> list[Any]:
    """A union's members (nested unions too, None left out); any other annotation alone."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) not in (Union, types.UnionType):
        return [annotation]
    return [m for a in get_args(annotation) if a is not type(None) for m in _flatten(a)]


def _members(annotation: Any, value: Any) -> Iterator[Any]:
    """The annotation(s) a raw value is validated against: a union's matching member."""
    members = _flatten(annotation)
    if len(members) == 1:
        yield members[0]
        return
    models = [m for m in map(_model, members) if m is not None]
    if isinstance(value, dict) and len(models) > 1:
        tagged = [m for m in models if value.get("type") in _tag_of(m)]
        yield from tagged[:1]  # an unknown `type` is the schema's to refuse
        return
    for member in members:
        origin = get_origin(member) or member
        if isinstance(value, dict) and (origin is dict or _model(member) is not None):
            yield member
            return
        if isinstance(value, list) and origin is list:
            yield member
            return


def _walk(annotation: Any, value: Any, path: tuple[PathPart, ...]
          ) -> Iterator[tuple[tuple[PathPart, ...], type[BaseModel]]]:
    for member in _members(annotation, value):
        model = _model(member)
        if model is not None:
            yield from unknown_in(model, value, path)
        elif get_origin(member) is list and isinstance(value, list):
            (item,) = get_args(member) or (Any,)
            for i, v in enumerate(value):
                yield from _walk(item, v, (*path, i))
        elif get_origin(member) is dict and isinstance(value, dict):
            _, item = get_args(member) or (Any, Any)
            for k, v in value.items():
                yield from _walk(item, v, (*path, k))


def unknown_in(model: type[BaseModel], value: Any, path: tuple[PathPart, ...] = ()
               ) -> Iterator[tuple[tuple[PathPart, ...], type[BaseModel]]]:
    """(path of each unknown key, the model that lacks it), in the data's order."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            yield (*path, key), model
            continue
        yield from _walk(field.annotation, item, (*path, key))


def _endpoint_hint(side: str, value: Any, connectors: Mapping[str, Any]) -> str:
    name = value if isinstance(value, str) and _NAME.match(value) else "<instance>"
    defined = ", ".join(sorted(connectors))
    where = (f"an instance defined under `connectors:` (defined: {defined})" if defined else
             f"{name} defined under `connectors:` (like {name}: {{type: sql, url: ...}})")
    return (f"is not a protocol key: the official parser drops it, leaving the {side} without "
            f"a system, so it is refused; write {side}: {{connectorInstanceId: {name}, "
            f"externalResource: <table or object>}} with {where}, or {side}: {{object: "
            "<name>} for an ObjectStack object")


def unknown_key_problems(data: Any, connectors: Mapping[str, Any] | None = None,
                         limit: int | None = None) -> Found:
    """A problem for each key of a sync config the protocol does not define (the first
    `limit` of them)."""
    found: Found = []
    for path, model in unknown_in(DataSyncConfig, data):
        if limit is not None and len(found) >= limit:
            break
        key = str(path[-1])
        if key == "connector" and model in (DataSourceConfig, DataDestinationConfig):
            value = _at(data, path)
            found.append((path, _endpoint_hint(str(path[-2]), value, connectors or {})))
            continue
        keys = list(model.model_fields)
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75) or [
            k for k in keys if k.lower() == key.lower()]
        hint = f"did you mean `{close[0]}`?" if close else f"keys here: {', '.join(keys)}"
        found.append((path, "is not a protocol key (the official parser would drop it "
                            f"silently, so it is refused); {hint}"))
    return found


def _at(data: Any, path: tuple[PathPart, ...]) -> Any:
    for part in path:
        data = data[part]
    return data
