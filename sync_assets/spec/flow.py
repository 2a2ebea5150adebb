"""Which way records flow, read from the config alone (no I/O).

Direction is relative to ObjectStack (PROTOCOL_NOTES part B): push flows from the ObjectStack
endpoint to the external one, pull from the external one to ObjectStack; when both endpoints
are of one kind, push is source -> destination and pull the reverse. The mapping is always
written source-side -> destination-side; renames, casts and one-to-one `map` tables flow back,
constants, lookups and expressions flow one way only.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .config import DataSyncConfig
from .mapping import CastTransform, FieldMapping, MapTransform
from .values import plain

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


def resolve_match_key(config: DataSyncConfig, name: str) -> list[str]:
    """The destination fields a matchKey name can mean: via the mapping or as a target."""
    mappings = config.destination.field_mappings()
    if not mappings:
        fields = config.source.fields
        return [name] if fields is None or name in fields else []
    candidates = {
        m.target for m in mappings
        if m.source == name and (m.transform is None or m.transform.type != "constant")
    }
    candidates |= {m.target for m in mappings if m.target == name}
    return sorted(candidates)
