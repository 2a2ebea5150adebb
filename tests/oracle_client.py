"""The official `@objectstack/spec` 16.1.0 parser (zod 4.4.3), run in Node, as a test oracle.

`tests/oracle/oracle.cjs` reads JSON lines `{"kind": "config" | "result", "data": ...}` and
answers one line each: `{"ok": true, "data": <parsed>}` or `{"ok": false, "issues": [...]}`.
One Node process serves the whole test session (`get_oracle()` is a cached singleton); every
call sends its cases as one batch and reads exactly as many answers back.

Also here: the comparison helpers the spec tests share (`parse_ours`, `js_json`).
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from sync_assets.spec import SyncConfigError, parse_execution_result, parse_sync_config

Kind = Literal["config", "result"]

ORACLE_DIR = Path(__file__).resolve().parent / "oracle"
ORACLE_SCRIPT = ORACLE_DIR / "oracle.cjs"
PINNED = {"@objectstack/spec": "16.1.0", "zod": "4.4.3"}
INSTALL_HINT = "run `npm ci --prefix tests/oracle` (needs Node.js 20+)"
MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class Verdict:
    """One parser's answer: accepted with its output, or rejected with its messages."""

    ok: bool
    data: Any = None
    problems: tuple[str, ...] = ()

    def short(self) -> str:
        if self.ok:
            return "accepted: " + json.dumps(self.data, sort_keys=True, ensure_ascii=False)
        return "rejected: " + " | ".join(self.problems)


def _check_install() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"Node.js is not on PATH; the spec oracle needs Node.js 20+, then {INSTALL_HINT}"
        )
    for package, version in PINNED.items():
        manifest = ORACLE_DIR / "node_modules" / package / "package.json"
        if not manifest.is_file():
            pytest.fail(f"the spec oracle is not installed ({manifest} missing): {INSTALL_HINT}")
        found = json.loads(manifest.read_text(encoding="utf-8")).get("version")
        if found != version:
            pytest.fail(f"the spec oracle needs {package} {version}, found {found}: {INSTALL_HINT}")
    return node


class Oracle:
    """A long-lived `node tests/oracle/oracle.cjs`; `parse_many` sends one batch."""

    def __init__(self) -> None:
        node = _check_install()
        self._proc = subprocess.Popen(
            [node, str(ORACLE_SCRIPT)],
            cwd=ORACLE_DIR.parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            bufsize=1 << 20,
        )
        self._lock = threading.Lock()

    def parse_many(self, cases: Sequence[tuple[Kind, Any]]) -> list[Verdict]:
        if not cases:
            return []
        lines = [
            json.dumps({"kind": kind, "data": data}, ensure_ascii=True, allow_nan=False) + "\n"
            for kind, data in cases
        ]
        with self._lock:
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            failure: list[BaseException] = []

            def feed() -> None:  # a writer thread: no pipe deadlock on big batches
                try:
                    proc.stdin.writelines(lines)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                except BaseException as exc:  # reported below
                    failure.append(exc)

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            answers = []
            for _ in lines:
                line = proc.stdout.readline()
                if not line:
                    break
                answers.append(json.loads(line))
            writer.join()
        if failure or len(answers) != len(lines):
            err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            pytest.fail(
                f"the spec oracle answered {len(answers)} of {len(lines)} cases "
                f"({failure[0] if failure else 'process ended'}); stderr: {err[-2000:]}"
            )
        return [
            Verdict(True, a["data"])
            if a["ok"]
            else Verdict(
                False,
                problems=tuple(
                    f"{'.'.join(map(str, i['path'])) or '(root)'}: {i['message']}"
                    for i in a["issues"]
                ),
            )
            for a in answers
        ]

    def parse(self, kind: Kind, data: Any) -> Verdict:
        return self.parse_many([(kind, data)])[0]

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()


_ORACLE: Oracle | None = None


def get_oracle() -> Oracle:
    """The session's one oracle process (started on first use, closed at interpreter exit)."""
    global _ORACLE
    if _ORACLE is None or _ORACLE._proc.poll() is not None:
        _ORACLE = Oracle()
        atexit.register(_ORACLE.close)
    return _ORACLE


def parse_ours(kind: Kind, data: Any) -> Verdict:
    """Our models' answer, in the oracle's terms."""
    parse = parse_sync_config if kind == "config" else parse_execution_result
    try:
        model = parse(data)
    except SyncConfigError as exc:
        return Verdict(False, problems=tuple(str(p) for p in exc.problems))
    return Verdict(True, model.to_spec())


def js_json(value: Any) -> Any:
    """`value` as JavaScript would hold it after `JSON.parse(json.dumps(value))`.

    Numbers are IEEE doubles there: an integral float is an integer (`1.0` prints as `1`), and an
    integer beyond 2**53 is rounded to the nearest double (beyond the double range it is
    Infinity, which JSON prints as null). Only the number representation
    changes; bools stay bools, so comparing `js_json(a) == js_json(b)` still tells `true` from
    `1` (see `same_json`).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            return value
        if abs(value) >= 2**1024:  # Infinity in JavaScript, which JSON.stringify prints as null
            return None
        return int(float(value))
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: js_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [js_json(v) for v in value]
    raise TypeError(f"not JSON data: {type(value).__name__}")


def same_json(a: Any, b: Any) -> bool:
    """Exact JSON equality after `js_json`, telling bools from numbers (unlike `==`)."""
    return json.dumps(js_json(a), sort_keys=True) == json.dumps(js_json(b), sort_keys=True)


def batch(oracle: Oracle, cases: Iterable[tuple[Kind, Any]]) -> list[tuple[Verdict, Verdict]]:
    """(ours, official) for each case, the official ones from a single oracle batch."""
    cases = list(cases)
    official = oracle.parse_many(cases)
    return [(parse_ours(k, d), o) for (k, d), o in zip(cases, official, strict=True)]
