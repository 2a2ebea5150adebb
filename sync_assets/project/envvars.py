"""`${VAR}` and `${VAR:-default}` in config strings, expanded from the environment.

Expansion happens on parsed values, never on file text, so a value cannot change the structure
of the file. `$${` writes a literal `${`. Expanded values are remembered so that error messages
can redact them: they are often credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec.errors import PathPart

_SURROGATE = re.compile("[\ud800-\udfff]")
_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Expansion:
    env: Mapping[str, str]
    missing: list[tuple[tuple[PathPart, ...], str]] = field(default_factory=list)
    #: variables whose value is not text a config can hold (bytes that are not UTF-8)
    unusable: list[tuple[tuple[PathPart, ...], str]] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)

    def expand(self, value: Any, path: tuple[PathPart, ...] = ()) -> Any:
        if isinstance(value, str):
            return self._expand_str(value, path)
        if isinstance(value, dict):
            return {k: self.expand(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _expand_str(self, text: str, path: tuple[PathPart, ...]) -> str:
        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name in self.env:
                value = self.env[name]
                # os.environ keeps bytes that are not UTF-8 as lone surrogates, which no
                # database, file or message can take later on.
                if _SURROGATE.search(value):
                    self.unusable.append((path, name))
                    return ""
            elif default is not None:
                value = default
            else:
                self.missing.append((path, name))
                return ""
            if len(value) >= 3:
                self.secrets.add(value)
            return value

        return _REF.sub(sub, text)

    def redact(self, message: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message
