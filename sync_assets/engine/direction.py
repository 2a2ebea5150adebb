"""Which way records flow, and the mapping read backwards.

Direction is relative to ObjectStack (PROTOCOL_NOTES part B): push flows from the ObjectStack
endpoint to the external one, pull from the external one to ObjectStack; when both endpoints
are of one kind, push is source -> destination and pull the reverse. The mapping is always
written source-side -> destination-side; flowing backwards inverts renames, one-to-one `map`
tables and casts. Constants, lookups and expressions flow one way only.
"""

from __future__ import annotations

from typing import Any

from ..spec import DataSyncConfig
from ..spec.flow import (
    Side,
    flows,
    inverse_map,
    is_reversed,
    one_way_notices,
    one_way_reason,
    push_flow,
    resolve_match_key,
)
from ..spec.mapping import CastTransform, MapTransform

__all__ = ["Side", "flows", "inverse_map", "is_reversed", "one_way_notices", "one_way_reason",
           "push_flow", "reverse_entries", "reversed_config"]

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
    mappings = dst.field_mappings()
    # without a mapping every field keeps its name, the change-tracking field too
    forward = ({m.source: m.target for m in mappings if m.transform is None} if mappings
               else {ctf: ctf} if ctf else {})
    data.update(source=new_source, destination=new_dest, direction="push")
    data.pop("changeTrackingField", None)
    if ctf and ctf in forward:
        data["changeTrackingField"] = forward[ctf]
    # `validation` stays: its rules name destination fields, which the reversed flow reads as
    # its source record, so they apply to what the pull writes (resolve_names keeps a name
    # the reversed mapping does not know, and the validator finds it in the source record)
    return DataSyncConfig.model_validate(data)
