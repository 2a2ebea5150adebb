"""Checks beyond the schema: what a valid DataSyncConfig still needs before it can run.

Each check returns problems as (path parts relative to the sync, message) so the loader can
add the file, the line and the sync's position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from croniter import croniter

from .. import filters as objectql
from ..spec import DataSyncConfig
from ..spec.errors import PathPart, format_path

Found = list[tuple[tuple[PathPart, ...], str]]


def check_endpoints(config: DataSyncConfig, connectors: Mapping[str, Any]) -> Found:
    found: Found = []
    defined = ", ".join(sorted(connectors)) or "(none)"
    for side in ("source", "destination"):
        endpoint = getattr(config, side)
        if endpoint.object is None and endpoint.connectorInstanceId is None:
            found.append(
                (
                    (side,),
                    "needs `object` (an ObjectStack object) or `connectorInstanceId` "
                    "(a connector instance defined under `connectors:`)",
                )
            )
        elif endpoint.object is not None and endpoint.connectorInstanceId is not None:
            found.append(
                ((side,), "has both `object` and `connectorInstanceId`; set only one of them")
            )
        elif endpoint.connectorInstanceId is not None:
            cid = endpoint.connectorInstanceId
            if cid not in connectors:
                found.append(
                    (
                        (side, "connectorInstanceId"),
                        f"connector instance '{cid}' is not defined; defined: {defined}",
                    )
                )
            elif connectors[cid] is None:
                pass  # its settings were already reported
            elif not endpoint.externalResource:
                from ..connectors.registry import connector_types

                kind = connector_types().get(getattr(connectors[cid], "type", ""))
                hint = kind.resource_hint if kind else "the record set to use"
                found.append(
                    (
                        (side, "externalResource"),
                        f"is required with connector instance '{cid}': {hint}",
                    )
                )
    return found


def check_schedule(config: DataSyncConfig) -> Found:
    schedule = config.schedule
    if schedule is None:
        return []
    if schedule.dialect != "cron":
        return [
            (
                ("schedule", "dialect"),
                f"a sync is scheduled by a cron expression; dialect '{schedule.dialect}' "
                "cannot schedule (use a string like '0 * * * *')",
            )
        ]
    if schedule.source is None:
        return [(("schedule", "source"), "is required: the cron expression, like '0 * * * *'")]
    if not croniter.is_valid(schedule.source) or len(schedule.source.split()) not in (5, 6):
        return [
            (
                ("schedule",),
                f"'{schedule.source}' is not a valid cron expression: use five fields "
                "'minute hour day-of-month month day-of-week', like '0 * * * *' (hourly)",
            )
        ]
    return []


def check_mapping(config: DataSyncConfig) -> Found:
    found: Found = []
    mapping = config.destination.mapping
    first_at: dict[str, tuple[PathPart, ...]] = {}
    if isinstance(mapping, dict):
        entries = [(("destination", "mapping", s), t) for s, t in mapping.items()]
    elif isinstance(mapping, list):
        entries = [
            (("destination", "mapping", i, "target"), m.target) for i, m in enumerate(mapping)
        ]
    else:
        entries = []
    for path, target in entries:
        if target in first_at:
            where = _short(first_at[target])
            found.append((path, f"'{target}' is already the target of {where}"))
        else:
            first_at[target] = path
    return found


def _short(path: tuple[PathPart, ...]) -> str:
    return format_path(path[1:] if path and path[0] == "destination" else path)


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


def check_match_key(config: DataSyncConfig) -> Found:
    found: Found = []
    targets = [m.target for m in config.destination.field_mappings()]
    for i, name in enumerate(config.destination.matchKey or []):
        fields = resolve_match_key(config, name)
        if not fields:
            known = ", ".join(sorted(set(targets))) or ", ".join(config.source.fields or [])
            found.append(
                (
                    ("destination", "matchKey", i),
                    f"'{name}' is not a mapped field; use a source field or a destination "
                    f"field of the mapping ({known})",
                )
            )
        elif len(fields) > 1:
            found.append(
                (
                    ("destination", "matchKey", i),
                    f"'{name}' is ambiguous: it is a source field mapped to "
                    f"'{next(f for f in fields if f != name)}' and also a destination field; "
                    "name the destination field",
                )
            )
    return found


def check_filters(config: DataSyncConfig) -> Found:
    if config.source.filters is None:
        return []
    try:
        objectql.parse_filter(config.source.filters, path="source.filters")
    except objectql.FilterError as exc:
        inner = exc.path.removeprefix("source.filters").lstrip(".")
        return [(("source", "filters"), f"at {inner}: {exc.message}" if inner else exc.message)]
    return []


def check_direction(config: DataSyncConfig) -> Found:
    """A flow backwards must find records by a field that flows backwards too."""
    from ..engine.direction import one_way_reason, push_flow

    backwards = config.direction == "bidirectional" or (
        (config.direction == "pull") != (push_flow(config)[0] == "destination"))
    if not backwards:
        return []
    found: Found = []
    by_target = {m.target: m for m in config.destination.field_mappings()}
    for i, name in enumerate(config.destination.matchKey or []):
        for field in resolve_match_key(config, name):
            m = by_target.get(field)
            reason = one_way_reason(m) if m is not None else None
            if reason:
                found.append((
                    ("destination", "matchKey", i),
                    f"'{name}' cannot find records when flowing destination -> source: "
                    f"{reason}; use a field mapped by a rename, a cast or a one-to-one map",
                ))
    return found


def notices(config: DataSyncConfig) -> Found:
    """Not errors: what a user should know about how this sync will run."""
    from ..engine.direction import one_way_notices, push_flow

    out: Found = [(("destination", "mapping"), text) for text in one_way_notices(config)]
    if config.direction == "push" and push_flow(config)[0] == "destination":
        out.append(((
            "direction",),
            "push flows from the ObjectStack endpoint (destination) to the external one "
            "(source); use direction: pull for the other way",
        ))
    return out


def check_sync(config: DataSyncConfig, connectors: Mapping[str, Any]) -> Found:
    return [
        *check_direction(config),
        *check_endpoints(config, connectors),
        *check_schedule(config),
        *check_mapping(config),
        *check_match_key(config),
        *check_filters(config),
    ]
