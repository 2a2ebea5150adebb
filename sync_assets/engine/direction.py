"""Which way records flow, and the mapping read backwards.

Direction is relative to ObjectStack (PROTOCOL_NOTES part B): push flows from the ObjectStack
endpoint to the external one, pull from the external one to ObjectStack; when both endpoints
are of one kind, push is source -> destination and pull the reverse. The mapping is always
written source-side -> destination-side; flowing backwards inverts renames, one-to-one `map`
tables and casts. Constants, lookups and expressions flow one way only.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ..spec import DataSyncConfig, FieldMapping
from ..spec.mapping import CastTransform, MapTransform
from .records import plain

Side = Literal["source", "destination"]


def push_flow(config: DataSyncConfig) -> tuple[Side, Side]:
    """(read side, written side) of a push."""
    source_is_objectstack = config.source.object is not None
    destination_is_objectstack = config.destination.object is not None
    if destination_is_objectstack and not source_is_objectstack:
        return "destination", "source"
    return "source", "destination"


def flows(config: DataSyncConfig) -> list[tuple[Side, Side]]:
    """The (read, write) flows a sync runs: one for push or pull, both for bidirectional."""
    push = push_flow(config)
    pull = (push[1], push[0])
    return {"push": [push], "pull": [pull], "bidirectional": [push, pull]}[config.direction]


def is_reversed(flow: tuple[Side, Side]) -> bool:
    return flow[0] == "destination"


def inverse_map(mappings: dict[str, Any]) -> dict[str, Any] | None:
    """The inverse of a `map` table when it is one-to-one over scalars, else None."""
    inverse: dict[str, Any] = {}
    for key, value in mappings.items():
        if isinstance(value, dict | list):
            return None
        text = value if isinstance(value, str) else json.dumps(plain(value))
        if text in inverse:
            return None
        inverse[text] = key
    return inverse


def one_way_reason(m: FieldMapping) -> str | None:
    """Why a mapping entry cannot flow destination -> source, or None when it can."""
    t = m.transform
    if t is None or isinstance(t, CastTransform):
        return None
    if isinstance(t, MapTransform):
        return None if inverse_map(t.mappings) is not None else "its map is not one-to-one"
    return {"constant": "it is a constant", "lookup": "it is a lookup",
            "javascript": "it is an expression"}[t.type]


def one_way_notices(config: DataSyncConfig) -> list[str]:
    """Load-time notices for fields that cannot flow backwards in a pull or two-way sync."""
    if config.direction == "push" and not is_reversed(push_flow(config)):
        return []
    if config.direction == "pull" and is_reversed(push_flow(config)):
        return []
    out = []
    for i, m in enumerate(config.destination.field_mappings()):
        reason = one_way_reason(m)
        if reason:
            out.append(
                f"destination.mapping[{i}] ({m.source} -> {m.target}) flows "
                f"{m.source} -> {m.target} only: {reason}"
            )
    return out


_CAST_OF_KIND = {"boolean": "boolean", "integer": "number", "decimal": "number",
                 "float": "number", "date": "date", "text": "string"}


def _cast_kind(kind: str | None) -> str | None:
    """The cast back to a source field of this portable kind, if one exists."""
    return _CAST_OF_KIND.get(kind or "")


def reverse_entries(
    config: DataSyncConfig, source_kinds: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The mapping read destination -> source, as list-form entries (one-way ones left out).

    A reversed cast casts back to the source column's kind when its type is known.
    """
    out: list[dict[str, Any]] = []
    for m in config.destination.field_mappings():
        if one_way_reason(m) is not None:
            continue
        entry: dict[str, Any] = {"source": m.target, "target": m.source}
        t = m.transform
        if isinstance(t, CastTransform):
            kind = _cast_kind((source_kinds or {}).get(m.source))
            if kind is not None:
                entry["transform"] = {"type": "cast", "targetType": kind}
        elif isinstance(t, MapTransform):
            entry["transform"] = {"type": "map", "mappings": inverse_map(t.mappings)}
        out.append(entry)
    return out


def reversed_config(config: DataSyncConfig, source_kinds: dict[str, Any] | None = None
                    ) -> DataSyncConfig:
    """The config of the destination -> source flow, as a push of its own."""
    entries = reverse_entries(config, source_kinds)
    back = {e["source"]: e["target"] for e in entries}
    data = config.to_spec()
    src, dst = config.source, config.destination
    from ..project.checks import resolve_match_key

    match_key = []
    for name in dst.matchKey or []:
        fields = resolve_match_key(config, name)
        match_key.append(back.get(fields[0], fields[0]) if fields else name)
    new_source: dict[str, Any] = {
        k: v for k, v in {"object": dst.object, "connectorInstanceId": dst.connectorInstanceId,
                          "externalResource": dst.externalResource}.items() if v is not None}
    new_dest: dict[str, Any] = {
        k: v for k, v in {"object": src.object, "connectorInstanceId": src.connectorInstanceId,
                          "externalResource": src.externalResource}.items() if v is not None}
    new_dest["operation"] = dst.operation
    new_dest["mapping"] = entries
    if match_key:
        new_dest["matchKey"] = match_key
    ctf = config.changeTrackingField
    forward = {m.source: m.target for m in dst.field_mappings() if m.transform is None}
    data.update(source=new_source, destination=new_dest, direction="push")
    data.pop("changeTrackingField", None)
    if ctf and ctf in forward:
        data["changeTrackingField"] = forward[ctf]
    data.pop("validation", None)  # rules name the push side's fields
    return DataSyncConfig.model_validate(data)
