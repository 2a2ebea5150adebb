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
from ..spec.flow import (
    flows,
    is_reversed,
    one_way_notices,
    one_way_reason,
    push_flow,
    resolve_match_key,
)

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
    out: Found = [(("destination", "mapping"), text) for text in one_way_notices(config)]
    out += key_notices(config)
    if config.direction == "push" and push_flow(config)[0] == "destination":
        out.append(((
            "direction",),
            "push flows from the ObjectStack endpoint (destination) to the external one "
            "(source); use direction: pull for the other way",
        ))
    return out


def _appends_exactly_once(config: DataSyncConfig, connectors: Mapping[str, Any],
                          objectstack: Any) -> bool:
    """Whether the written side can append records exactly once (state in its own
    transactions): a SQL database can, an API cannot."""
    from ..connectors.registry import connector_types

    for _, side in flows(config):
        written = getattr(config, side)
        if written.object is not None:
            settings = objectstack.as_connector() if objectstack is not None else None
        else:
            settings = connectors.get(written.connectorInstanceId or "")
        kind = connector_types().get(getattr(settings, "type", "sql"))
        if kind is not None and not kind.appends_exactly_once:
            return False
    return True


def check_keys(config: DataSyncConfig, connectors: Mapping[str, Any],
               objectstack: Any = None) -> Found:
    """Keys that cannot apply to this sync's direction and systems: errors, never ignored."""
    found: Found = []
    dest = config.destination
    if config.direction == "bidirectional" and dest.operation == "delete":
        found.append((("destination", "operation"),
                      "delete cannot run bidirectionally (it would delete on one side what "
                      "the other holds); use sync to propagate deletes both ways, or "
                      "direction push or pull"))
    if (dest.operation == "insert" and not dest.matchKey
            and not _appends_exactly_once(config, connectors, objectstack)):
        found.append((("destination", "matchKey"),
                      "insert without matchKey appends, which the system written to cannot "
                      "make exactly-once (it keeps no sync state in its own transactions): "
                      "give a matchKey, e.g. an external id or an email"))
    return found


def key_notices(config: DataSyncConfig) -> Found:
    """Keys that have no effect in this sync's direction or mode, said at load time."""
    out: Found = []
    reads_destination = config.direction != "bidirectional" and is_reversed(flows(config)[0])
    if reads_destination:
        for key in ("filters", "fields"):
            if getattr(config.source, key) is not None:
                out.append((("source", key), f"source.{key} has no effect: this sync reads "
                                             "the destination side and writes the source "
                                             "side"))
        ctf = config.changeTrackingField
        mappings = config.destination.field_mappings()
        renamed = {m.source for m in mappings if m.transform is None} if mappings else {ctf}
        if ctf and ctf not in renamed:
            out.append((("changeTrackingField",),
                        f"'{ctf}' has no counterpart on the destination side (a field mapped "
                        "by a rename), so every run reads the destination whole and writes "
                        "only what changed"))
    opt = config.optimization
    if config.direction == "bidirectional" and opt is not None and opt.parallelBatches:
        out.append((("optimization", "parallelBatches"),
                    "a two-way sync writes its batches one after another (each write is "
                    "guarded by what the run read)"))
    return out


def check_sync(config: DataSyncConfig, connectors: Mapping[str, Any],
               objectstack: Any = None) -> Found:
    return [
        *check_keys(config, connectors, objectstack),
        *check_direction(config),
        *check_endpoints(config, connectors),
        *check_schedule(config),
        *check_mapping(config),
        *check_match_key(config),
        *check_filters(config),
    ]
