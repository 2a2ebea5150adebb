"""A project on disk: ObjectStack settings, connector instances and syncs, loaded and checked.

A file holds one DataSyncConfig or a project (`objectstack`, `connectors`, `state`, `syncs`);
a folder is one project made of all its .yaml/.yml/.json files. Every problem in every file is
collected and raised together as one SyncConfigError, each naming file, line and field path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..connectors.registry import connector_types
from ..connectors.settings import (
    ConnectorSettings,
    ObjectStackSettings,
    StateSettings,
)
from ..spec import DataSyncConfig, SyncConfigError
from ..spec.errors import PathPart, Problem, format_path, problems_from_validation
from .checks import Found, check_connector, check_sync
from .checks import notices as sync_notices
from .envvars import Expansion
from .unknown_keys import unknown_key_problems
from .yaml_lines import FileFormatError, Lines, line_of, read_config_file

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
PROJECT_KEYS = ("objectstack", "connectors", "state", "syncs")
#: syncs are checked until this many problems are found: a file of 200,000 broken values
#: would otherwise take seconds to list, in megabytes nobody reads
MAX_PROBLEMS = 1_000


@dataclass(frozen=True)
class SyncDefinition:
    """One sync of a project, with where it was written."""

    config: DataSyncConfig
    file: Path
    #: how the file names it (as given on the command line) and the line of each value in it
    shown: str = field(default="", compare=False, repr=False)
    lines: Lines = field(default_factory=dict, compare=False, repr=False)
    #: where the sync sits in its file: () for a file of one sync, ("syncs", i) in a project
    prefix: tuple[PathPart, ...] = field(default=(), compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    def problem(self, parts: tuple[PathPart, ...], message: str) -> Problem:
        """A problem at `parts` (relative to the sync) with its file and line."""
        path = (*self.prefix, *parts)
        return Problem(format_path(path), message, self.shown or str(self.file),
                       line_of(self.lines, path))


@dataclass(frozen=True)
class Project:
    root: Path
    objectstack: ObjectStackSettings = field(default_factory=ObjectStackSettings)
    connectors: Mapping[str, ConnectorSettings] = field(default_factory=dict)
    state: StateSettings = field(default_factory=StateSettings)
    syncs: Mapping[str, SyncDefinition] = field(default_factory=dict)
    #: things worth knowing that are not errors (e.g. fields that flow one way only)
    notices: tuple[Problem, ...] = ()
    #: values expanded from the environment, which messages must not show
    secrets: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def redact(self, message: str) -> str:
        """`message` with every value expanded from the environment replaced by ***."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message

    def sync(self, name: str) -> SyncDefinition:
        try:
            return self.syncs[name]
        except KeyError:
            known = ", ".join(sorted(self.syncs)) or "(none)"
            raise SyncConfigError.single(
                "--sync", f"no sync named '{name}' in {self.root}; syncs: {known}"
            ) from None


class _ProjectFile(BaseModel):
    """The project-level keys of one file; syncs are validated one by one."""

    model_config = ConfigDict(extra="forbid")

    objectstack: ObjectStackSettings | None = None
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    state: StateSettings | None = None
    syncs: list[Any] = Field(default_factory=list)


def _is_single_sync(data: Any) -> bool:
    return isinstance(data, dict) and not any(k in data for k in PROJECT_KEYS) and "name" in data


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in CONFIG_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)
    return out


def _resolve_sqlite(url: str, base: Path) -> str:
    """Relative SQLite paths are relative to the file that names them, not the cwd."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:" and not rest.startswith("/"):
                return prefix + str((base / rest).resolve())
    return url


class _Collector:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.problems: list[Problem] = []
        self.expansion = Expansion(env)
        # Connector ids whose settings were rejected: syncs naming them are not told again.
        self.broken_connectors: set[str] = set()
        self.notices: list[Problem] = []
        # A file's `connectors` could not be read at all: syncs naming an instance are not
        # told it is undefined.
        self.connectors_unreadable = False
        # Where the current file's environment variables were missing or unusable.
        self.env_gaps: list[tuple[PathPart, ...]] = []

    def check_connector(self, settings: Any, prefix: tuple[PathPart, ...]) -> Found:
        """checks.check_connector's problems, unless a variable in these settings was missing:
        that is told already, and the URL is then incomplete for sure."""
        if any(gap[: len(prefix)] == prefix for gap in self.env_gaps):
            return []
        return check_connector(settings)

    def add(self, file: str, lines: Lines, parts: tuple[PathPart, ...], message: str) -> None:
        self.problems.append(
            Problem(format_path(parts), self.expansion.redact(message), file, line_of(lines, parts))
        )


def load_project(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    env: Mapping[str, str] | None = None,
) -> Project:
    """Load and check a project from files and folders; raise SyncConfigError listing all."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise SyncConfigError.single("(arguments)", "no project file or folder given")
    collect = _Collector(os.environ if env is None else env)
    for p in path_list:
        if not p.exists():
            collect.problems.append(Problem("(file)", "does not exist", str(p)))
    if collect.problems:
        raise SyncConfigError(collect.problems)
    files = _files(path_list)
    if not files:
        raise SyncConfigError.single(
            "(file)", "no .yaml, .yml or .json files found", str(path_list[0])
        )

    root = path_list[0] if path_list[0].is_dir() else path_list[0].parent
    objectstack: tuple[ObjectStackSettings, str] | None = None
    state: tuple[StateSettings, str] | None = None
    connectors: dict[str, tuple[ConnectorSettings, str]] = {}
    pending: list[tuple[Any, str, Lines, tuple[PathPart, ...], Path]] = []

    for file in files:
        shown = str(file)
        try:
            raw, lines = read_config_file(file, shown)
        except FileFormatError as exc:
            collect.problems.append(exc.problem)
            continue
        before = len(collect.expansion.missing)
        before_unusable = len(collect.expansion.unusable)
        data = collect.expansion.expand(raw)
        for parts, var in collect.expansion.missing[before:]:
            collect.add(
                shown,
                lines,
                parts,
                f"environment variable {var} is not set (write ${{{var}:-default}} "
                "to give a fallback)",
            )
        for parts, var in collect.expansion.unusable[before_unusable:]:
            collect.add(shown, lines, parts,
                        f"environment variable {var} holds bytes that are not UTF-8 text")
        collect.env_gaps = [parts for parts, _ in (*collect.expansion.missing[before:],
                                                   *collect.expansion.unusable[before_unusable:])]
        if data is None:
            collect.add(shown, lines, (), "is empty: expected a sync or a project")
            continue
        if _is_single_sync(data):
            pending.append((data, shown, lines, (), file))
            continue
        if not isinstance(data, dict):
            collect.add(
                shown, lines, (), "must be a mapping: a sync (name, source, destination) "
                f"or a project ({', '.join(PROJECT_KEYS)})"
            )
            continue
        data = _with_connector_types(data, shown, lines, collect)
        pf = _project_file(data, shown, lines, collect)
        if pf is None:
            continue
        base = file.parent
        if pf.objectstack is not None:
            for parts, msg in collect.check_connector(pf.objectstack, ("objectstack",)):
                collect.add(shown, lines, ("objectstack", *parts), msg)
            if objectstack is not None:
                collect.add(shown, lines, ("objectstack",), f"is also set in {objectstack[1]}")
            else:
                objectstack = (_with_url(pf.objectstack, base), shown)
        if pf.state is not None:
            for parts, msg in collect.check_connector(pf.state, ("state",)):
                collect.add(shown, lines, ("state", *parts), msg)
            if state is not None:
                collect.add(shown, lines, ("state",), f"is also set in {state[1]}")
            else:
                state = (_with_url(pf.state, base), shown)
        for cid, raw_settings in pf.connectors.items():
            settings = _connector_settings(cid, raw_settings, shown, lines, collect)
            if settings is None:
                continue
            if cid in connectors:
                collect.add(
                    shown, lines, ("connectors", cid), f"is also defined in {connectors[cid][1]}"
                )
            else:
                connectors[cid] = (_with_url(settings, base), shown)
        for i, sync in enumerate(pf.syncs):
            pending.append((sync, shown, lines, ("syncs", i), file))

    syncs: dict[str, SyncDefinition] = {}
    seen_at: dict[str, str] = {}
    connector_map = {cid: s for cid, (s, _) in connectors.items()}
    stopped = False
    for data, shown, lines, prefix, file in pending:
        if len(collect.problems) >= MAX_PROBLEMS:
            stopped = True
            break
        room = MAX_PROBLEMS - len(collect.problems)
        unknown = unknown_key_problems(data, connector_map, limit=room + 1)
        for parts, msg in unknown[:room]:
            collect.add(shown, lines, (*prefix, *parts), msg)
        if len(unknown) > room:
            stopped = True
            break
        try:
            config = DataSyncConfig.model_validate(data)
        except ValidationError as exc:
            # Schema problems first; the checks beyond the schema need a valid config, and
            # are made for this sync once these are fixed (every other sync gets its own).
            for parts, msg in problems_from_validation(exc):
                collect.add(shown, lines, (*prefix, *parts), msg)
            continue
        known = {**dict.fromkeys(collect.broken_connectors), **connector_map}
        if collect.connectors_unreadable:
            known = {**dict.fromkeys(_instances(config)), **known}
        told = {parts[:-1] for parts, _ in unknown if parts[-1] == "connector"}
        for parts, msg in check_sync(config, known, objectstack[0] if objectstack else None):
            if parts in told and msg.startswith("needs `object`"):
                continue  # its `connector` key was told, with the form to write instead
            collect.add(shown, lines, (*prefix, *parts), msg)
        for parts, msg in sync_notices(config):
            collect.notices.append(Problem(
                format_path((*prefix, *parts)), msg, shown, line_of(lines, (*prefix, *parts))))
        where = f"{shown}:{line_of(lines, prefix) or 1}"
        if config.name in seen_at:
            collect.add(
                shown,
                lines,
                (*prefix, "name"),
                f"a sync named '{config.name}' is already defined at {seen_at[config.name]}",
            )
            continue
        seen_at[config.name] = where
        syncs[config.name] = SyncDefinition(config, file, shown, lines, prefix)

    if collect.problems:
        # Reading order: file by file, top to bottom (Python's sort keeps ties in place).
        found = sorted(collect.problems, key=lambda p: (p.file or "", p.line or 0))
        if stopped:
            found.append(Problem("(project)", f"checking stopped after {MAX_PROBLEMS:,} "
                                              "problems; fix these first"))
        raise SyncConfigError(found)
    return Project(
        root=root.resolve(),
        objectstack=objectstack[0] if objectstack else _with_url(ObjectStackSettings(), root),
        connectors=connector_map,
        state=state[0] if state else StateSettings(),
        syncs=syncs,
        notices=tuple(collect.notices),
        secrets=frozenset(collect.expansion.secrets),
    )


def _instances(config: DataSyncConfig) -> list[str]:
    return [cid for cid in (config.source.connectorInstanceId,
                            config.destination.connectorInstanceId) if cid is not None]


def _project_file(data: dict[str, Any], file: str, lines: Lines, collect: _Collector
                  ) -> _ProjectFile | None:
    """The project keys of one file. A part that is wrong is reported and left out, so the
    rest (the syncs above all) is still checked."""
    try:
        return _ProjectFile.model_validate(data)
    except ValidationError as exc:
        found = problems_from_validation(exc)
    kept = dict(data)
    connectors = dict(kept["connectors"]) if isinstance(kept.get("connectors"), dict) else None
    for parts, msg in found:
        collect.add(file, lines, parts, _project_message(parts, msg))
        top = parts[0] if parts else None
        if top == "connectors" and len(parts) > 1 and connectors is not None:
            connectors.pop(str(parts[1]), None)
            collect.broken_connectors.add(str(parts[1]))
        elif top == "connectors":
            collect.connectors_unreadable = True
            kept.pop("connectors", None)
            connectors = None
        elif isinstance(top, str):
            kept.pop(top, None)
        else:
            return None
    if connectors is not None:
        kept["connectors"] = connectors
    try:
        return _ProjectFile.model_validate(kept)
    except ValidationError:  # not expected: every part that failed was left out
        return None


def _with_url(settings: Any, base: Path) -> Any:
    if hasattr(settings, "relative_to"):  # a connector's own rule for relative paths
        return settings.relative_to(base)
    url = getattr(settings, "url", None)
    if url is None or not hasattr(url, "get_secret_value"):
        return settings  # a plain URL (an ObjectStack server's) names no file to resolve
    resolved = _resolve_sqlite(url.get_secret_value(), base)
    return settings.model_copy(update={"url": type(url)(resolved)})


def _connector_settings(cid: str, data: dict[str, Any], file: str, lines: Lines,
                        collect: _Collector) -> Any:
    """One instance's settings, validated by its connector type's own model."""
    model = connector_types()[data["type"]].settings
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        collect.broken_connectors.add(cid)
        for parts, msg in problems_from_validation(exc):
            parts = ("connectors", cid, *parts)
            collect.add(file, lines, parts, _project_message(parts, msg))
        return None
    found = collect.check_connector(settings, ("connectors", cid))
    if found:
        collect.broken_connectors.add(cid)
        for parts, msg in found:
            collect.add(file, lines, ("connectors", cid, *parts), msg)
        return None
    return settings


def _with_connector_types(
    data: dict[str, Any], file: str, lines: Lines, collect: _Collector
) -> dict[str, Any]:
    """Report unknown connector types by name (pydantic's union message would not)."""
    connectors = data.get("connectors")
    if not isinstance(connectors, dict):
        return data
    known_types = connector_types()
    kept: dict[str, Any] = {}
    collect.broken_connectors.update(
        cid for cid, settings in connectors.items()
        if not (isinstance(settings, dict) and _hashable(settings.get("type"))
                and settings.get("type") in known_types)
    )
    allowed = ", ".join(sorted(known_types))
    for cid, settings in connectors.items():
        kind = settings.get("type") if isinstance(settings, dict) else None
        if isinstance(settings, dict) and not _hashable(kind):
            collect.add(file, lines, ("connectors", cid, "type"),
                        f"must be the name of a connector type; available: {allowed}")
            continue
        if isinstance(settings, dict) and kind not in known_types:
            what = f"unknown connector type '{kind}'" if kind else "needs a `type`"
            collect.add(file, lines, ("connectors", cid, "type"), f"{what}; available: {allowed}")
            continue
        kept[cid] = settings
    return {**data, "connectors": kept}


def _hashable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _project_message(parts: tuple[PathPart, ...], message: str) -> str:
    if message.startswith("extra inputs are not permitted"):
        if len(parts) == 1:
            return f"unknown key; a project has {', '.join(PROJECT_KEYS)}"
        return "unknown key (check the spelling)"
    return message


__all__ = ["Project", "SyncDefinition", "load_project"]
