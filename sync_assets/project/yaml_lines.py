"""Read YAML and JSON config files into plain data, keeping the line of every YAML value.

Dates stay strings (a business user's `2024-01-31` is text to the protocol, not a datetime), a
key written twice is an error rather than a silent overwrite, and mapping keys become strings the
way JSON would have them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..spec.errors import PathPart, Problem, format_path

Lines = dict[tuple[PathPart, ...], int]

#: bounds on what one file may hold: far above any real project, far below what a YAML alias
#: bomb or a pathological file would make the loader do
MAX_FILE_BYTES = 10_000_000
MAX_VALUES = 200_000
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    return json.dumps(key)  # true -> "true", 1 -> "1", null -> "null"


class FileFormatError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class _Budget:
    """Values built so far: aliases can make a few bytes name millions of values."""

    def __init__(self) -> None:
        self.values = 0


def _build(
    loader: _Loader,
    node: yaml.Node,
    path: tuple[PathPart, ...],
    lines: Lines,
    file: str,
    line: int | None = None,
    budget: _Budget | None = None,
) -> Any:
    budget = budget or _Budget()
    budget.values += 1
    where = line or node.start_mark.line + 1
    if budget.values > MAX_VALUES:
        raise FileFormatError(Problem(
            format_path(path) or "(file)", f"holds more than {MAX_VALUES:,} values (YAML "
            "aliases repeat what they name; a project needs far fewer)", file, where))
    if len(path) > MAX_DEPTH:
        raise FileFormatError(Problem(
            format_path(path), f"is nested deeper than {MAX_DEPTH} levels", file, where))
    # A value's line is where its key is written: a block mapping's value starts a line later.
    lines[path] = where
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # `<<` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key_text(loader.construct_object(key_node, deep=True))
            if key in out:
                raise FileFormatError(
                    Problem(
                        format_path((*path, key)),
                        f"key '{key}' appears twice in one mapping "
                        f"(first on line {lines[(*path, key)]})",
                        file,
                        key_node.start_mark.line + 1,
                    )
                )
            out[key] = _build(
                loader, value_node, (*path, key), lines, file, key_node.start_mark.line + 1,
                budget,
            )
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines, file, None, budget)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read_config_file(path: Path, display: str | None = None) -> tuple[Any, Lines]:
    """The data in a .yaml/.yml/.json file and, for YAML, the line of every value by path."""
    shown = display or str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FileFormatError(Problem(
                "(file)", f"is larger than {MAX_FILE_BYTES // 1_000_000} MB; a project is "
                "a few files of syncs", shown))
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileFormatError(Problem("(file)", f"cannot read: {exc.strerror}", shown)) from None
    except UnicodeDecodeError:
        raise FileFormatError(Problem("(file)", "is not UTF-8 text", shown)) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), {}
        except RecursionError:
            raise FileFormatError(Problem(
                "(file)", f"invalid JSON: nested deeper than Python can read ({MAX_DEPTH} "
                "levels are allowed)", shown)) from None
        except json.JSONDecodeError as exc:
            raise FileFormatError(
                Problem(
                    "(file)", f"invalid JSON: {exc.msg} (column {exc.colno})", shown, exc.lineno
                )
            ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: Lines = {}
        return _build(loader, node, (), lines, shown), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "invalid YAML"
        raise FileFormatError(Problem("(file)", f"invalid YAML: {what}", shown, line)) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(Problem("(file)", f"invalid YAML: {exc}", shown)) from None
    except RecursionError:
        raise FileFormatError(Problem(
            "(file)", f"invalid YAML: nested too deeply ({MAX_DEPTH} levels are allowed)",
            shown)) from None
    finally:
        loader.dispose()


def line_of(lines: Lines, path: tuple[PathPart, ...]) -> int | None:
    """The line of the value at `path`, or of its nearest parent that has one."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]
