"""Checks beyond the schema: what a valid DataSyncConfig still needs before it can run.

Each check returns problems as (path parts relative to the sync, message) so the loader can
add the file, the line and the sync's position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .. import filters as objectql
from ..connectors.settings import ObjectStackSettings, StateSettings
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
from ..spec.mapping import JavascriptTransform
from .cron import cron_problem

Found = list[tuple[tuple[PathPart, ...], str]]

#: an expression longer than this is refused unread: a real one is a line or two, and parsing
#: megabytes of CEL would hold a load for minutes
MAX_EXPRESSION_CHARS = 10_000


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
    problem = cron_problem(schedule.source)
    return [(("schedule",), problem)] if problem else []


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


def check_names(config: DataSyncConfig) -> Found:
    """Names of fields, objects and tables must not be empty: no database has a column named
    '', and the engine would fail on the first record set it opens or creates."""
    field, table = "a field", "a table"
    named: list[tuple[tuple[PathPart, ...], str | None, str]] = []
    dest, source = config.destination, config.source
    if isinstance(dest.mapping, dict):
        for s, t in dest.mapping.items():
            named += [(("destination", "mapping", s), s, field),
                      (("destination", "mapping", s), t, field)]
    elif isinstance(dest.mapping, list):
        for i, m in enumerate(dest.mapping):
            at: tuple[PathPart, ...] = ("destination", "mapping", i)
            named += [((*at, "source"), m.source, field), ((*at, "target"), m.target, field)]
            if m.transform is not None and m.transform.type == "lookup":
                named += [((*at, "transform", key), getattr(m.transform, key),
                           table if key == "table" else field)
                          for key in ("table", "keyField", "valueField")]
    named += [((side, "object"), endpoint.object, "an ObjectStack object")
              for side, endpoint in (("source", source), ("destination", dest))]
    named += [(("destination", "matchKey", i), k, field)
              for i, k in enumerate(dest.matchKey or [])]
    named += [(("source", "fields", i), f, field) for i, f in enumerate(source.fields or [])]
    named.append((("changeTrackingField",), config.changeTrackingField, field))
    rules = config.validation
    for key in ("required", "unique"):
        named += [(("validation", key, i), f, field)
                  for i, f in enumerate((getattr(rules, key) or []) if rules else [])]
    return [(path, f"must not be empty: name {what}")
            for path, name, what in named if name == ""]


def check_uses(config: DataSyncConfig, connectors: Mapping[str, Any]) -> Found:
    """What the connector types named say they cannot do for this sync (a write-only API
    read, an operation its endpoints lack): `ConnectorType.check_use`."""
    from ..connectors.base import SyncUse
    from ..connectors.registry import connector_types

    found: Found = []
    pairs = flows(config)
    for side in ("source", "destination"):
        endpoint = getattr(config, side)
        settings = connectors.get(endpoint.connectorInstanceId or "")
        if endpoint.connectorInstanceId is None or settings is None:
            continue
        kind = connector_types().get(getattr(settings, "type", ""))
        if kind is None or kind.check_use is None:
            continue
        read = any(r == side for r, _ in pairs)
        written = any(w == side for _, w in pairs)
        role = "both" if read and written else "read" if read else "written"
        use = SyncUse(side, role, config.destination.operation,  # type: ignore[arg-type]
                      tuple(config.destination.matchKey or ()))
        found += [(tuple(path), message) for path, message in kind.check_use(settings, use)]
    return found


def check_sync(config: DataSyncConfig, connectors: Mapping[str, Any],
               objectstack: Any = None) -> Found:
    return [
        *check_names(config),
        *check_keys(config, connectors, objectstack),
        *check_uses(config, connectors),
        *check_direction(config),
        *check_endpoints(config, connectors),
        *check_schedule(config),
        *check_mapping(config),
        *check_match_key(config),
        *check_filters(config),
        *check_expressions(config),
    ]


def _check_cel(path: tuple[PathPart, ...], source: str) -> Found:
    if len(source) > MAX_EXPRESSION_CHARS:
        return [(path, f"is longer than {MAX_EXPRESSION_CHARS:,} characters; write a shorter "
                       "expression")]
    # Imported here: the engine imports the project package, which imports these checks.
    from ..engine.cel import ExpressionError, compile_expression

    try:
        compile_expression(source)
    except ExpressionError as exc:
        return [(path, str(exc))]
    except RecursionError:  # the parser recurses once per level of parentheses or operators
        return [(path, "is nested too deeply to compile; write a flatter expression")]
    return []


def check_expressions(config: DataSyncConfig) -> Found:
    """Every CEL expression compiles when the project loads, as the engine will compile it
    (`source`; an `ast` alone is the engine's to refuse): a typo is an error naming its file and
    line, not a failed run."""
    found: Found = []
    for i, m in enumerate(config.destination.field_mappings()):
        if isinstance(m.transform, JavascriptTransform) and m.transform.expression.source:
            found += _check_cel(("destination", "mapping", i, "transform", "expression"),
                                m.transform.expression.source)
    rules = config.validation
    for i, rule in enumerate((rules.custom or []) if rules else []):
        if rule.condition.source:
            found += _check_cel(("validation", "custom", i, "condition"), rule.condition.source)
    return found


_UNKNOWN_ENGINE_OPTIONS = re.compile(
    r"Invalid argument\(s\) (.+) sent to create_engine\(\), using configuration ([^.\s]+)")


def _check_engine_options(url: str, options: Mapping[str, Any]) -> Found:
    """SQLAlchemy reads `engineOptions` only when it creates the engine, with errors of any
    Python type (a TypeError for an unknown option): create one now, without connecting."""
    import sqlalchemy as sa

    from ..connectors.sql.table import engine_url, redact

    try:
        target = engine_url(url)
        sa.create_engine(target).dispose()
    except Exception:  # the URL itself (a typo, a missing driver) is told when a sync opens it
        return []
    # `echo` takes any value, and would log this trial engine's statements to stdout
    options = {k: v for k, v in options.items() if k not in ("echo", "echo_pool")}
    try:
        engine = sa.create_engine(target, **options)
        if engine.dialect.name == "sqlite":
            # `connect_args` and `isolation_level` are read only on connecting: SQLite can
            # connect to a memory database with the same options, touching no file.
            engine.dispose()
            engine = sa.create_engine(sa.make_url(target).set(database=":memory:"), **options)
            engine.connect().close()
        engine.dispose()
    except Exception as exc:  # dialects and pools raise any type for a bad option
        text = redact(str(exc), url)
        unknown = _UNKNOWN_ENGINE_OPTIONS.match(text)
        if unknown is None:
            return [(("engineOptions",), "are refused by SQLAlchemy: "
                                         f"{type(exc).__name__}: {text}")]
        names = [n.strip("'") for n in unknown.group(1).split(",")]
        where: tuple[PathPart, ...] = (
            ("engineOptions", names[0]) if len(names) == 1 else ("engineOptions",))
        what = "is not an option" if len(names) == 1 else "are not options"
        return [(where, f"{unknown.group(1)} {what} of SQLAlchemy's create_engine() for this "
                        f"database ({unknown.group(2)})")]
    return []


def _check_http_url(url: str) -> Found:
    """An http(s) URL (the ObjectStack server's) must parse and name a host: else every call
    fails, or httpx raises when the connector is opened."""
    import httpx

    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        return [(("url",), f"is not a valid URL: {exc}")]
    if not host:
        return [(("url",), "names no host; write it like https://objectstack.example.com")]
    return []


def _check_database_url(url: str) -> Found:
    """A database URL must parse: else the engine can show it only by what precedes its first
    colon, which for a mistyped URL may be a password. Never shown here."""
    import sqlalchemy as sa

    try:
        sa.make_url(url)
    except Exception:  # ArgumentError, or ValueError for a port that is not a number
        return [(("url",), "is not a database URL: write it as dialect://user@host/database, "
                           "e.g. postgresql://sync@db.example.com/warehouse or "
                           "sqlite:///warehouse.db")]
    return []


def check_connector(settings: Any) -> Found:
    """A connector instance's (or the ObjectStack datastore's, or the state's) settings beyond
    their model: what would otherwise fail only when a sync opens it, and not as a
    ConnectorError."""
    url = getattr(settings, "url", None)
    text = url.get_secret_value() if hasattr(url, "get_secret_value") else url
    if not isinstance(text, str):
        return []
    found: Found = []
    # `https://` with nothing after it arrives as `https:` (the REST settings strip a slash)
    if text.lower().startswith(("http:", "https:")):
        found += _check_http_url(text)
    elif getattr(settings, "type", None) == "sql" or isinstance(
            settings, ObjectStackSettings | StateSettings):
        found += _check_database_url(text)
    options = getattr(settings, "engine_options", None)
    if options:
        found += _check_engine_options(text, options)
    return found
