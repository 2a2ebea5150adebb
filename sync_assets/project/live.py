"""`sync-assets validate --connect`: a loaded project's field names against the live systems.

Each sync's two endpoints are opened as a run opens them and described (nothing is read or
written). Mapping source fields, `source.fields`, match keys, filter fields and the
`changeTrackingField` must exist on the source; mapping targets and match keys on the
destination, unless it does not exist yet and its system creates it on the first run. A record
set a run reads must exist. A system that cannot be reached is not a config problem: it is
reported apart, as a run would fail (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import filters as objectql
from ..connectors.base import ConnectorError, Description, Endpoint, TransientError
from ..connectors.registry import connector_type
from ..spec import DataSyncConfig
from ..spec.errors import PathPart, Problem
from ..spec.flow import flows
from ..spec.mapping import ConstantTransform
from . import Project, SyncDefinition

#: field names listed in a message at most (a wide table has hundreds)
SHOWN_FIELDS = 30

Side = str
Described = tuple[Endpoint, Description]


@dataclass
class LiveCheck:
    """What checking against the live systems found."""

    #: names that do not exist where the config says: config problems (exit 2)
    problems: list[Problem] = field(default_factory=list)
    #: endpoints that could not be opened or described (exit 1)
    unreachable: list[Problem] = field(default_factory=list)
    #: not problems: destinations the first run will create
    notices: list[Problem] = field(default_factory=list)
    #: how many record sets were described
    described: int = 0


def _fields_text(desc: Description) -> str:
    names = list(desc.fields)
    shown = ", ".join(names[:SHOWN_FIELDS])
    more = len(names) - SHOWN_FIELDS
    return f"{shown}, and {more} more" if more > 0 else shown or "(none)"


def _resource_path(config: DataSyncConfig, side: Side) -> tuple[PathPart, ...]:
    endpoint = getattr(config, side)
    return (side, "object" if endpoint.object is not None else "externalResource")


def _must_exist(config: DataSyncConfig) -> set[Side]:
    """The sides a run reads before it could create anything: the source of a two-way sync
    (the destination is created), else the side the one flow reads."""
    if config.direction == "bidirectional":
        return {"source"}
    return {flows(config)[0][0]}


class _Describer:
    """Opens and describes each record set once, however many syncs name it."""

    def __init__(self, project: Project) -> None:
        from ..engine.endpoints import open_endpoint  # the engine imports this package

        self.project = project
        self.open = open_endpoint
        self.seen: dict[tuple[str | None, ...], Described | ConnectorError] = {}
        #: systems that could not be reached: their other record sets are not tried (each
        #: try could wait out a connect timeout)
        self.down: dict[str | None, ConnectorError] = {}

    def __call__(self, endpoint: Any) -> Described:
        key = (endpoint.object, endpoint.connectorInstanceId, endpoint.externalResource)
        system = None if endpoint.object is not None else endpoint.connectorInstanceId
        if key not in self.seen and system in self.down:
            raise ConnectorError(f"not checked: connector instance '{system}' could not be "
                                 f"reached ({self.down[system]})")
        if key not in self.seen:
            try:
                opened = self.open(self.project, endpoint)
                self.seen[key] = (opened, opened.describe())
            except TransientError as exc:
                self.seen[key] = self.down[system] = exc
            except ConnectorError as exc:
                self.seen[key] = exc
        found = self.seen[key]
        if isinstance(found, ConnectorError):
            raise found
        return found


def check_live(project: Project, names: Iterable[str] | None = None) -> LiveCheck:
    """Check the syncs named (default: all) against the systems they name."""
    out = LiveCheck()
    describe = _Describer(project)
    for name in sorted(project.syncs) if names is None else names:
        _check_sync(project, project.syncs[name], describe, out)
    out.described = sum(1 for v in describe.seen.values() if not isinstance(v, ConnectorError))
    for found in (out.problems, out.unreachable, out.notices):
        found.sort(key=_reading_order)
    return out


def _reading_order(problem: Problem) -> tuple[str, int]:
    return problem.file or "", problem.line or 0


def _check_sync(project: Project, sync: SyncDefinition, describe: _Describer,
                out: LiveCheck) -> None:
    config = sync.config
    found: list[tuple[tuple[PathPart, ...], str]] = []
    described: dict[Side, Described] = {}
    for side in ("source", "destination"):
        endpoint = getattr(config, side)
        settings = project.connectors.get(endpoint.connectorInstanceId or "")
        why = (connector_type(getattr(settings, "type", "")).not_live
               if settings is not None else None)
        if why:
            out.notices.append(sync.problem(_resource_path(config, side),
                                            f"not checked here: {why}"))
            continue
        try:
            described[side] = describe(endpoint)
        except ConnectorError as exc:
            out.unreachable.append(sync.problem((side,), project.redact(str(exc))))
    for side, (endpoint, desc) in described.items():
        if desc.exists:
            continue
        if side in _must_exist(config):
            found.append((_resource_path(config, side),
                          f"{endpoint.display} does not exist, and this sync reads it"))
        elif not endpoint.capabilities.creates_resource:
            found.append((_resource_path(config, side),
                          f"{endpoint.display} does not exist, and its system does not create "
                          "record sets: create it first"))
        else:
            out.notices.append(sync.problem(
                _resource_path(config, side),
                f"{endpoint.display} does not exist yet: the first run creates it"))
    source = described.get("source")
    destination = described.get("destination")
    available: list[str] | None = None
    if source is not None and source[1].exists:
        found += _source_problems(config, *source)
        wanted = config.source.fields
        available = list(wanted) if wanted is not None else list(source[1].fields)
    if destination is not None and destination[1].exists:
        found += _destination_problems(config, *destination, available)
    for parts, message in found:
        out.problems.append(sync.problem(parts, project.redact(message)))


def _source_problems(config: DataSyncConfig, endpoint: Endpoint, desc: Description
                     ) -> list[tuple[tuple[PathPart, ...], str]]:
    found: list[tuple[tuple[PathPart, ...], str]] = []
    fields = desc.fields
    where = endpoint.display

    def missing(name: str) -> str:
        return f"'{name}' is not a field of {where}; its fields: {_fields_text(desc)}"

    wanted = config.source.fields
    for i, name in enumerate(wanted or []):
        if name not in fields:
            found.append((("source", "fields", i), missing(name)))
    available = set(wanted if wanted is not None else fields)
    for path, m in _entries(config):
        if isinstance(m.transform, ConstantTransform) or m.source in available:
            continue
        if m.source in fields:  # a field of the source, but not among those read
            found.append(((*path, "source") if isinstance(path[-1], int) else path,
                          f"'{m.source}' is not in source.fields "
                          f"({', '.join(wanted or [])}): add it there to read it"))
        else:
            found.append(((*path, "source") if isinstance(path[-1], int) else path,
                          missing(m.source)))
    if not config.destination.field_mappings():
        for i, name in enumerate(config.destination.matchKey or []):
            if name not in available:
                found.append((("destination", "matchKey", i), missing(name)))
    ctf = config.changeTrackingField
    if ctf and ctf not in fields:
        found.append((("changeTrackingField",), missing(ctf)))
    try:
        node = objectql.parse_filter(config.source.filters) if config.source.filters else None
    except objectql.FilterError:  # told when the project loaded
        node = None
    for name in sorted(objectql.filter_fields(node) - set(fields)):
        found.append((("source", "filters"), missing(name)))
    return found


def _entries(config: DataSyncConfig) -> list[tuple[tuple[PathPart, ...], Any]]:
    """Each mapping entry with its path: `mapping.<source>` in the record form,
    `mapping[i]` in the list form."""
    mapping = config.destination.mapping
    entries = config.destination.field_mappings()
    if isinstance(mapping, dict):
        return [(("destination", "mapping", m.source), m) for m in entries]
    return [(("destination", "mapping", i), m) for i, m in enumerate(entries)]


def _destination_problems(config: DataSyncConfig, endpoint: Endpoint, desc: Description,
                          source_fields: Sequence[str] | None
                          ) -> list[tuple[tuple[PathPart, ...], str]]:
    found: list[tuple[tuple[PathPart, ...], str]] = []
    fields = desc.fields
    where = endpoint.display
    entries = _entries(config)
    for path, m in entries:
        if m.target not in fields:
            found.append(((*path, "target") if isinstance(path[-1], int) else path,
                          f"'{m.target}' is not a field of {where}; its fields: "
                          f"{_fields_text(desc)}"))
    if entries:
        return found  # a match key names mapped fields: their targets are checked above
    if source_fields is not None:
        absent = [f for f in source_fields if f not in fields]
        if absent:
            found.append((("destination",), f"has no mapping, so every source field is "
                                            f"written under its own name, and {where} has no "
                                            f"field {', '.join(absent)}; its fields: "
                                            f"{_fields_text(desc)}"))
        return found  # a match key names source fields, checked on the source
    for i, name in enumerate(config.destination.matchKey or []):
        if name not in fields:
            found.append((("destination", "matchKey", i),
                          f"'{name}' is not a field of {where}; its fields: "
                          f"{_fields_text(desc)}"))
    return found
