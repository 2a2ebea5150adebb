"""Builders for the engine tests: projects on disk, seeded tables, checked results."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from sync_assets import Project, SyncExecutionResult, load_project, parse_execution_result
from sync_assets.engine import run

COUNTERS = ("processed", "inserted", "updated", "deleted", "skipped", "errored")
STATE_TABLES = ("_sync_assets_cursor", "_sync_assets_records", "_sync_assets_changes")


@contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    """A private engine for seeding and checking, always disposed."""
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def project(tmp_path: Path, urls: tuple[str, str], *syncs: Mapping[str, Any]) -> Project:
    """A project (ObjectStack at urls[0], connector `warehouse` at urls[1]) with these syncs."""
    data = {
        "objectstack": {"url": urls[0]},
        "connectors": {"warehouse": {"type": "sql", "url": urls[1]}},
        "syncs": [dict(s) for s in syncs],
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_project(path, env={})


def to_warehouse(name: str, source: str, table: str, operation: str = "upsert",
                 **extra: Any) -> dict[str, Any]:
    """A sync from the ObjectStack object `source` to warehouse table `table`.

    `mapping`, `matchKey` go into destination; `filters`, `fields` into source; the rest
    (camelCase) to the sync.
    """
    dest: dict[str, Any] = {"connectorInstanceId": "warehouse", "externalResource": table,
                            "operation": operation}
    src: dict[str, Any] = {"object": source}
    for key in ("mapping", "matchKey"):
        if key in extra:
            dest[key] = extra.pop(key)
    for key in ("filters", "fields"):
        if key in extra:
            src[key] = extra.pop(key)
    # The change log is evidence in many tests; it exists only with an `audit` section.
    extra.setdefault("audit", {})
    if extra["audit"] is None:
        del extra["audit"]
    return {"name": name, "source": src, "destination": dest, **extra}


def create_table(url: str, name: str, columns: Sequence[sa.Column[Any]],
                 rows: Sequence[Mapping[str, Any]] = (),
                 constraints: Sequence[Any] = ()) -> None:
    table = sa.Table(name, sa.MetaData(), *columns, *constraints)
    with engine_for(url) as engine, engine.begin() as conn:
        table.create(conn)
        if rows:
            conn.execute(table.insert(), [dict(r) for r in rows])


def execute(url: str, *statements: str | sa.Executable,
            params: Mapping[str, Any] | None = None) -> None:
    with engine_for(url) as engine, engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt) if isinstance(stmt, str) else stmt, dict(params or {}))


def reflect(conn: sa.Connection, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def insert(url: str, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    with engine_for(url) as engine, engine.begin() as conn:
        conn.execute(reflect(conn, name).insert(), [dict(r) for r in rows])


def update(url: str, name: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    with engine_for(url) as engine, engine.begin() as conn:
        table = reflect(conn, name)
        cond = [table.c[k] == v for k, v in where.items()]
        assert conn.execute(sa.update(table).where(*cond).values(dict(values))).rowcount == 1


def delete(url: str, name: str, where: Mapping[str, Any]) -> None:
    with engine_for(url) as engine, engine.begin() as conn:
        table = reflect(conn, name)
        conn.execute(sa.delete(table).where(*[table.c[k] == v for k, v in where.items()]))


def table_names(url: str) -> set[str]:
    with engine_for(url) as engine:
        return set(sa.inspect(engine).get_table_names())


def rows(url: str, name: str, order_by: str | Sequence[str] | None = None) -> list[tuple[Any, ...]]:
    """All rows of a table as tuples in column order, sorted by `order_by` (default: all)."""
    with engine_for(url) as engine, engine.connect() as conn:
        table = reflect(conn, name)
        keys = [order_by] if isinstance(order_by, str) else list(order_by or table.c.keys())
        stmt = sa.select(table).order_by(*[table.c[k] for k in keys])
        return [tuple(r) for r in conn.execute(stmt)]


def count_rows(url: str, name: str) -> int:
    with engine_for(url) as engine, engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(
            reflect(conn, name))).scalar_one())


def state_counts(url: str) -> dict[str, int]:
    """Rows in each state table (0 for a missing one)."""
    present = table_names(url)
    return {t: count_rows(url, t) if t in present else 0 for t in STATE_TABLES}


def spec(result: SyncExecutionResult) -> dict[str, Any]:
    """The protocol form of a result, checked: valid, times in Z, counts add up, no secrets."""
    out = result.to_spec()
    parse_execution_result(json.loads(json.dumps(out)))
    assert out["startedAt"].endswith("Z") and out["completedAt"].endswith("Z")
    s = out["stats"]
    assert s["recordsProcessed"] == sum(
        s[k] for k in ("recordsInserted", "recordsUpdated", "recordsDeleted", "recordsSkipped",
                       "recordsErrored")
    ), s
    return out


def counts(result: SyncExecutionResult) -> dict[str, int]:
    """The six counters (nonzero ones only), after checking the result (see `spec`)."""
    s = spec(result)["stats"]
    out = {k: s["records" + k.capitalize()] for k in COUNTERS}
    return {k: v for k, v in out.items() if v}


def sync(proj: Project, name: str, **options: Any) -> SyncExecutionResult:
    """Run a sync, check the result's shape and counting invariant, return it.

    Retries never wait: `sleep` is a no-op unless a test passes its own.
    """
    options.setdefault("sleep", lambda _seconds: None)
    result = run(proj, name, **options)
    spec(result)
    return result


def status(result: SyncExecutionResult) -> str:
    return str(result.to_spec()["status"])


def errors(result: SyncExecutionResult) -> list[dict[str, Any]]:
    return list(result.to_spec().get("errors") or [])


def codes(result: SyncExecutionResult) -> list[str | None]:
    return [e.get("code") for e in errors(result)]
