"""Read YAML and JSON config files into plain data, keeping the line of every value.

Dates stay strings (a business user's `2024-01-31` is text to the protocol, not a datetime), a
key written twice is an error rather than a silent overwrite, and mapping keys become strings the
way JSON would have them. What a file may hold is bounded (size, values, nesting, the length of
a number) and limited to JSON's values that every database can store, so that a malformed file
is one error naming its file, line and path: never a hang, a crash or a traceback later on.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import unicodedata
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
#: how deep the YAML composer and the JSON reader go before refusing the file outright
COMPOSE_DEPTH = 2 * MAX_DEPTH
#: a number written longer than this is refused before it is read: reading `1:2:3:...` (YAML's
#: base 60) or a 5,000-digit number costs far more than any real config's number, and Python
#: refuses to print ints beyond 4,300 digits
MAX_NUMBER_CHARS = 100
#: whole numbers must fit the 64-bit integer columns of SQLite and PostgreSQL
MIN_INT, MAX_INT = -(2**63), 2**63 - 1

_YAML_TAG = "tag:yaml.org,2002:"
_NUMBER_TAGS = (f"{_YAML_TAG}int", f"{_YAML_TAG}float")
_MERGE_TAG = f"{_YAML_TAG}merge"
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_JSON_WORDS = (("true", True), ("false", False), ("null", None), ("NaN", math.nan),
               ("Infinity", math.inf), ("-Infinity", -math.inf))


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, composing at most MAX_VALUES nodes: a
    10 MB file of `[0, 0, ...]` would otherwise be millions of nodes (minutes, gigabytes)
    before the count of values built could refuse it."""

    display = ""
    composed = 0
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self.composed += 1
        if self.composed > MAX_VALUES:  # without libyaml to count first (read_config_file)
            raise FileFormatError(Problem(
                "(file)", _TOO_MANY, self.display, self.peek_event().start_mark.line + 1))
        # The composer recurses once per level: stop it long before Python's recursion limit
        # (below COMPOSE_DEPTH, the built values' own check names the path).
        self.depth += 1
        try:
            if self.depth > COMPOSE_DEPTH:
                raise FileFormatError(Problem(
                    "(file)", _TOO_DEEP, self.display, self.peek_event().start_mark.line + 1))
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


if getattr(yaml, "__with_libyaml__", False):
    class _FastLoader(yaml.CSafeLoader):  # type: ignore[misc,name-defined]
        """libyaml's composer (marks kept, ten times the pure-Python one's speed), with
        the same resolvers; run only after `_scan_events` bounded the nodes and depth."""

    _FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
else:  # pragma: no cover - PyYAML built without libyaml
    _FastLoader = None


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    return json.dumps(key)  # true -> "true", 1 -> "1", null -> "null"


class FileFormatError(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def scalar_problem(value: object) -> str | None:
    """Why a scalar read from a file cannot be config data, or None when it can.

    Config values are JSON's (text, numbers, true/false, null), as the protocol has them; and
    they end up in databases and messages: a NUL or a lone surrogate cannot be stored or even
    encoded as UTF-8, a whole number beyond 64 bits fits no integer column.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\0), which text in a database cannot hold"
        found = _SURROGATE.search(value)
        if found:
            return (f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not a "
                    "character and cannot be written as UTF-8")
        return None
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        if MIN_INT <= value <= MAX_INT:
            return None
        return ("is a whole number beyond 64 bits, which no database column holds (quote it "
                "to keep it as text)")
    return f"is a {type(value).__name__}, which a config cannot hold"


_TOO_DEEP = f"invalid YAML: nested too deeply ({MAX_DEPTH} levels are allowed)"
_TOO_MANY = (f"holds more than {MAX_VALUES:,} values (YAML aliases repeat what they name; a "
             "project needs far fewer)")
_TOO_LONG_NUMBER = (f"is a number written with more than {MAX_NUMBER_CHARS} characters (quote "
                    "it to keep it as text)")


class _Reader:
    """What YAML and JSON reading share: the line of each value, and the bounds."""

    why_so_many = ""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: Lines = {}
        # Values built so far: aliases can make a few bytes name millions of values.
        self.values = 0

    def enter(self, path: tuple[PathPart, ...], line: int) -> None:
        """Count one more value at `path`, written on `line`; refuse what is over a bound."""
        self.values += 1
        if self.values > MAX_VALUES:
            raise FileFormatError(Problem(
                format_path(path) or "(file)", f"holds more than {MAX_VALUES:,} values "
                f"({self.why_so_many}a project needs far fewer)", self.file, line))
        if len(path) > MAX_DEPTH:
            raise FileFormatError(Problem(
                format_path(path), f"is nested deeper than {MAX_DEPTH} levels", self.file, line))
        self.lines[path] = line

    def fail(self, path: tuple[PathPart, ...], message: str, line: int | None) -> FileFormatError:
        return FileFormatError(Problem(format_path(path), message, self.file, line))


class _YamlBuilder(_Reader):
    """Plain data from a composed YAML node tree, checked value by value."""

    why_so_many = "YAML aliases repeat what they name; "

    def __init__(self, loader: _Loader, file: str) -> None:
        super().__init__(file)
        self.loader = loader
        self._merged: dict[int, int] = {}
        self._scalars: dict[int, Any] = {}

    def build(self, node: yaml.Node, path: tuple[PathPart, ...], line: int | None = None) -> Any:
        # A value's line is where its key is written: a block mapping's value starts a line
        # later.
        where = line or node.start_mark.line + 1
        self.enter(path, where)
        if isinstance(node, yaml.MappingNode):
            merged = self._flatten(node)
            out: dict[str, Any] = {}
            own_keys: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                    raise self.fail(path, f"has a {kind} as a key; a key must be text, a "
                                          "number, true, false or null", key_line)
                key = _key_text(self.scalar(key_node, path, key_line, of_key=True))
                if index < merged:
                    if key in out:
                        continue  # an earlier merged mapping has it
                else:
                    if key in own_keys:
                        raise self.fail(
                            (*path, key),
                            f"key '{key}' appears twice in one mapping "
                            f"(first on line {self.lines[(*path, key)]})",
                            key_line,
                        )
                    own_keys.add(key)
                out[key] = self.build(value_node, (*path, key), key_line)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node, path, where)

    def _flatten(self, node: yaml.MappingNode) -> int:
        """Resolve `<<` merge keys in place; how many of the pairs now first were merged.

        YAML's merge key gives a mapping's own keys precedence over merged ones, and earlier
        merged mappings over later ones: only a key written twice in the mapping itself is an
        error. A node an alias names again is already flattened: its count is remembered.
        """
        if id(node) not in self._merged:
            own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
            self.loader.flatten_mapping(node)  # puts the merged pairs first
            self._merged[id(node)] = len(node.value) - own
        return self._merged[id(node)]

    def scalar(self, node: yaml.Node, path: tuple[PathPart, ...], line: int,
               of_key: bool = False) -> Any:
        """A scalar's value; `of_key`: it is a key of the mapping at `path`."""
        if id(node) in self._scalars:  # one an alias names again (an alias bomb: thousands)
            return self._scalars[id(node)]
        tag = node.tag.replace(_YAML_TAG, "!!")
        what = "has a key that " if of_key else ""
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise self.fail(path, what + _TOO_LONG_NUMBER, line)
        try:
            value = self.loader.construct_object(node, deep=True)
        # An explicit tag on text it does not fit (`!!int abc`, `!!bool maybe`) makes PyYAML's
        # constructors fail with plain Python errors.
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise self.fail(path, f"{what}is not a valid {tag} value", line) from None
        problem = scalar_problem(value)
        if problem and not isinstance(value, str | int):
            problem = (f"is a YAML {tag} value, which a config cannot hold: use text, a "
                       "number, true, false or null")
        if problem:
            raise self.fail(path, what + problem, line)
        self._scalars[id(node)] = value
        return value


class _JsonBuilder(_Reader):
    """The data of a JSON text that `json.loads` accepted, read again to keep the line of
    every value, refuse a key written twice and apply the bounds YAML files have."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(file)
        self.text = text
        self._breaks = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self._breaks, pos) + 1

    def _skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        return match.end() if match else pos

    def build(self, pos: int, path: tuple[PathPart, ...], line: int | None = None,
              ) -> tuple[Any, int]:
        """The value starting at `pos` (after whitespace) and where it ends."""
        text = self.text
        pos = self._skip(pos)
        where = line or self.line(pos)
        self.enter(path, where)
        first = text[pos]
        if first == "{":
            out: dict[str, Any] = {}
            pos = self._skip(pos + 1)
            while text[pos] != "}":
                key_line = self.line(pos)
                key, pos = json.decoder.scanstring(text, pos + 1)
                problem = scalar_problem(key)
                if problem:
                    raise self.fail(path, f"has a key that {problem}", key_line)
                if key in out:
                    raise self.fail(
                        (*path, key),
                        f"key '{key}' appears twice in one object "
                        f"(first on line {self.lines[(*path, key)]})",
                        key_line,
                    )
                pos = self._skip(pos) + 1  # the ':'
                out[key], pos = self.build(pos, (*path, key), key_line)
                pos = self._skip(pos)
                if text[pos] == ",":
                    pos = self._skip(pos + 1)
            return out, pos + 1
        if first == "[":
            items: list[Any] = []
            pos = self._skip(pos + 1)
            while text[pos] != "]":
                item, pos = self.build(pos, (*path, len(items)))
                items.append(item)
                pos = self._skip(pos)
                if text[pos] == ",":
                    pos = self._skip(pos + 1)
            return items, pos + 1
        if first == '"':
            value, end = json.decoder.scanstring(text, pos + 1)
        else:
            value, end = self._number_or_word(pos, path, where)
        problem = scalar_problem(value)
        if problem:
            raise self.fail(path, problem, where)
        return value, end

    def _number_or_word(self, pos: int, path: tuple[PathPart, ...], line: int,
                        ) -> tuple[Any, int]:
        for word, value in _JSON_WORDS:
            if self.text.startswith(word, pos):
                return value, pos + len(word)
        match = _JSON_NUMBER.match(self.text, pos)
        if match is None:  # json.loads accepted the text, so this cannot happen
            raise self.fail(path, "invalid JSON", line)
        written = match.group()
        if len(written) > MAX_NUMBER_CHARS:
            raise self.fail(path, _TOO_LONG_NUMBER, line)
        fraction, exponent = match.groups()
        return (float(written) if fraction or exponent else int(written)), match.end()


def _discard(_value: object) -> None:
    return None


_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _line_too_deep(text: str) -> int | None:
    """The line where JSON text nests deeper than COMPOSE_DEPTH (strings skipped)."""
    depth = 0
    for match in _JSON_STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > COMPOSE_DEPTH:
                return text.count("\n", 0, match.start()) + 1
        elif token in "]}":
            depth -= 1
    return None


def _read_json(text: str, shown: str) -> tuple[Any, Lines]:
    try:
        # json.loads checks the syntax (with its own messages), building nothing: numbers are
        # read by _JsonBuilder, under its bounds.
        json.loads(text, object_pairs_hook=_discard, parse_int=_discard,
                   parse_float=_discard, parse_constant=_discard)
    except RecursionError:
        raise FileFormatError(Problem(
            "(file)", f"invalid JSON: nested too deeply ({MAX_DEPTH} levels are allowed)",
            shown, _line_too_deep(text))) from None
    except json.JSONDecodeError as exc:
        raise FileFormatError(
            Problem("(file)", f"invalid JSON: {exc.msg} (column {exc.colno})", shown, exc.lineno)
        ) from None
    builder = _JsonBuilder(text, shown)
    data, _ = builder.build(0, ())
    return data, builder.lines


def _reader_problem(exc: yaml.reader.ReaderError, text: str, shown: str) -> Problem:
    """A character YAML does not allow (a control character, U+FFFE, ...), with its line."""
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    kind = "a control character" if unicodedata.category(char) == "Cc" else "a special character"
    line = text.count("\n", 0, exc.position) + 1 if 0 <= exc.position <= len(text) else None
    return Problem("(file)", f"invalid YAML: {kind} (U+{ord(char):04X}) is not allowed in YAML "
                   "text", shown, line)


_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent,
                yaml.MappingStartEvent)


def _scan_events(text: str) -> tuple[Problem | None, bool]:
    """libyaml's (C) pass over the events of YAML text, before anything is composed: the
    problem of a text past MAX_VALUES nodes or COMPOSE_DEPTH levels (the line where it
    passes them), and whether the text parsed, so that libyaml may compose it (its composer
    recurses in C, unbounded: only a text known to be shallow goes to it)."""
    nodes = depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, _NODE_EVENTS):
                nodes += 1
                if nodes > MAX_VALUES:
                    return Problem("(file)", _TOO_MANY, "", int(event.start_mark.line) + 1), False
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                depth += 1
                if depth > COMPOSE_DEPTH:
                    return Problem("(file)", _TOO_DEEP, "", int(event.start_mark.line) + 1), False
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None, False  # the pure-Python reader says what is wrong, with its line
    return None, True


def read_config_file(path: Path, display: str | None = None) -> tuple[Any, Lines]:
    """The data in a .yaml/.yml/.json file and the line of every value by path."""
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
        return _read_json(text, shown)
    fast = False
    if _FastLoader is not None:
        found, fast = _scan_events(text)
        if found is not None:
            raise FileFormatError(Problem(found.path, found.message, shown, found.line))
    try:
        # the pure-Python reader refuses control characters here, on all the text
        loader: Any = _FastLoader(text) if fast else _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise FileFormatError(_reader_problem(exc, text, shown)) from None
    loader.display = shown
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        builder = _YamlBuilder(loader, shown)
        return builder.build(node, ()), builder.lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "invalid YAML"
        raise FileFormatError(Problem("(file)", f"invalid YAML: {what}", shown, line)) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(Problem("(file)", f"invalid YAML: {exc}", shown)) from None
    except RecursionError:  # COMPOSE_DEPTH stops the composer first: a last resort
        raise FileFormatError(Problem("(file)", _TOO_DEEP, shown)) from None
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
