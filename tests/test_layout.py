"""The promises the layout makes: the engine imports neither SQLAlchemy nor a concrete
connector (only the contract), and the README's table of keys names every key of the sync
config."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sync_assets.spec import DataSyncConfig

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "sync_assets" / "engine"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, as absolute names."""
    package = ["sync_assets", "engine"]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def test_the_engine_imports_no_sqlalchemy_and_no_concrete_connector() -> None:
    allowed_connectors = {"sync_assets.connectors.base", "sync_assets.connectors.registry"}
    offenders = {}
    for path in sorted(ENGINE.glob("*.py")):
        bad = sorted(
            m for m in imported_modules(path)
            if m.split(".")[0] == "sqlalchemy"
            or (m.startswith("sync_assets.connectors.")
                and not any(m == a or m.startswith(a + ".") for a in allowed_connectors)))
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_the_readme_key_table_names_every_key_of_a_sync() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Every key in every direction", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"`([A-Za-z.]+)(?::[^`]*)?`", table))
    top = {f.alias or name for name, f in DataSyncConfig.model_fields.items()}
    nested = {"source.filters", "source.fields", "destination.operation",
              "destination.mapping", "destination.matchKey", "errorHandling.onSyncError",
              "errorHandling.onValidationError", "errorHandling.notifyOnError",
              "optimization.parallelBatches", "optimization.cacheEnabled",
              "optimization.compressionEnabled"}
    # the endpoints and their parts are rows of their own; `errorHandling`, `optimization`
    # are covered by their keys
    expected = (top - {"source", "destination", "errorHandling", "optimization", "direction"}
                ) | nested
    assert sorted(expected - named) == []
