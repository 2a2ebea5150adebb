"""The tools measured: our engine and the comparators, each as a command run in a fresh process.

Every tool owns one destination table (a schema of its own), knows how to empty it before
task A, how to run each task, and where its result is to be checked.

PostgreSQL (source database bench_src, destination database bench_dst, one server):
  engine            sync_assets, the project YAML of the issue (upsert by email, incremental on
                    updated_at, batchSize 10000; task D: operation sync, the mirror)
  INSERT..SELECT    the floor: one INSERT ... SELECT ... ON CONFLICT (email) DO UPDATE ... WHERE
                    changed, by psql, inside ONE database (the destination is the schema
                    floor_sql of bench_src: PostgreSQL cannot INSERT ... SELECT across
                    databases); incremental from the destination's max(updated_at); D adds a
                    DELETE of the rows that left the filtered source
  COPY pipe         the floor across databases: psql COPY (SELECT ...) TO STDOUT (binary) piped
                    into psql COPY into a temporary table of bench_dst, then the same upsert
                    (D: the full filtered table, upsert, delete what is missing)
  pandas            read_sql + to_sql into a staging table + the same upsert (bench/tools)
  dlt <backend>     dlt 1.31 sql_table -> postgres, merge on email, incremental on updated_at;
                    D: write disposition replace (bench/tools/dlt_sync.py); "(csv)": loader
                    file format csv (COPY), dlt's documented fast path for arrow data on
                    postgres; no suffix: dlt's defaults (insert_values)
SQLite (task A only, source src.db, one destination file per tool):
  engine            the same sync, SQLite to SQLite
  INSERT..SELECT    ATTACH DATABASE src.db, then INSERT INTO contacts SELECT ... ON CONFLICT
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "tools"

UPSERT_SET = """ON CONFLICT (email) DO UPDATE SET id = EXCLUDED.id,
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
    updated_at = EXCLUDED.updated_at
WHERE (contacts.id, contacts.first_name, contacts.last_name, contacts.updated_at)
    IS DISTINCT FROM (EXCLUDED.id, EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.updated_at)"""
COLS = "id, email, first_name, last_name, updated_at"


@dataclass
class Context:
    """Where everything is, shared by all tools of one benchmark run."""

    work: Path                       # scratch folder (project files, SQLite files, dlt state)
    pg_admin: str = ""               # libpq URL of the server's postgres database
    src: str = ""                    # libpq URL of bench_src
    dst: str = ""                    # libpq URL of bench_dst
    engine_python: str = ""          # /work/main/.venv/bin/python
    comparator_python: str = ""      # bench/.venv/bin/python
    harness_python: str = ""
    sqlite_src: Path = field(default_factory=Path)

    @staticmethod
    def sa_url(url: str) -> str:
        return url.replace("postgresql://", "postgresql+psycopg2://", 1)


class Tool:
    name = ""
    backend = "postgres"
    kind = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # where the result is checked: (database 'src'/'dst', table) on PostgreSQL
    table: tuple[str, str] = ("dst", "")

    def reset(self, pg: Any) -> None:
        """Empty destination (and no state) before task A."""

    def command(self, task: str) -> list[str]:
        raise NotImplementedError


def _reset_schema(conn: Any, schema: str, create_table: bool = True) -> None:
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        cur.execute(f'CREATE SCHEMA "{schema}"')
        if create_table:
            cur.execute(data.PG_DEST_DDL.format(schema=schema))
    conn.commit()


# -- PostgreSQL ------------------------------------------------------------------------------
ENGINE_PROJECT = """\
objectstack: {{url: "{src}"}}
connectors:
  warehouse: {{type: sql, url: "{dst}"}}
syncs:
  - name: bench_contacts
    source: {{object: contact, filters: {{status: active}}}}
    destination:
      connectorInstanceId: warehouse
      externalResource: {resource}
      operation: {operation}
      matchKey: [email]
      mapping: {{id: id, email: email, first_name: first_name, last_name: last_name,
                updated_at: updated_at}}
    syncMode: incremental
    changeTrackingField: updated_at
    batchSize: 10000
"""


class EnginePg(Tool):
    name = "engine"
    kind = "engine"
    table = ("dst", "engine.contacts")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "engine_pg"
        self.dir.mkdir(parents=True, exist_ok=True)
        for op in ("upsert", "sync"):
            (self.dir / f"{op}.yaml").write_text(ENGINE_PROJECT.format(
                src=ctx.sa_url(ctx.src), dst=ctx.sa_url(ctx.dst), resource="engine.contacts",
                operation=op))

    def reset(self, pg: Any) -> None:
        _reset_schema(pg["dst"], "engine")  # the engine keeps its state in this schema too

    def command(self, task: str) -> list[str]:
        op = "sync" if task == "D" else "upsert"
        return [self.ctx.engine_python, str(TOOLS / "engine_sync.py"),
                str(self.dir / f"{op}.yaml"), "bench_contacts"]


class InsertSelectPg(Tool):
    name = "INSERT..SELECT (1 db)"
    kind = "floor"
    table = ("src", "floor_sql.contacts")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "floor_sql"
        self.dir.mkdir(parents=True, exist_ok=True)
        base = (
            "SELECT coalesce(max(updated_at), '-infinity') AS cursor "
            "FROM floor_sql.contacts \\gset\n"
            f"INSERT INTO floor_sql.contacts ({COLS})\n"
            f"SELECT {COLS} FROM public.contact\n"
            f"WHERE {data.FILTER_SQL} AND updated_at >= :'cursor'\n{UPSERT_SET};\n"
        )
        (self.dir / "upsert.sql").write_text(base)
        # the mirror needs every key: no cursor, then delete what left the filtered source
        (self.dir / "mirror.sql").write_text(
            base.replace("AND updated_at >= :'cursor'", "")
            + "DELETE FROM floor_sql.contacts d WHERE NOT EXISTS (SELECT 1 FROM public.contact "
              f"s WHERE s.email = d.email AND s.{data.FILTER_SQL});\n")

    def reset(self, pg: Any) -> None:
        _reset_schema(pg["src"], "floor_sql")

    def command(self, task: str) -> list[str]:
        script = self.dir / ("mirror.sql" if task == "D" else "upsert.sql")
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", self.ctx.src,
                "-f", str(script)]


class CopyPipePg(Tool):
    name = "COPY pipe"
    kind = "floor"
    table = ("dst", "copy_pipe.contacts")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "copy_pipe"
        self.dir.mkdir(parents=True, exist_ok=True)
        load = (
            "CREATE TEMP TABLE stage (LIKE copy_pipe.contacts) ON COMMIT DROP;\n"
            "\\copy stage FROM pstdin (FORMAT binary)\n"
        )
        upsert = (f"INSERT INTO copy_pipe.contacts ({COLS}) SELECT {COLS} FROM stage\n"
                  f"{UPSERT_SET};\n")
        (self.dir / "upsert.sql").write_text(load + upsert)
        (self.dir / "mirror.sql").write_text(
            load + "ANALYZE stage;\n" + upsert
            + "DELETE FROM copy_pipe.contacts d WHERE NOT EXISTS "
              "(SELECT 1 FROM stage s WHERE s.email = d.email);\n")
        select = f"SELECT {COLS} FROM public.contact WHERE {data.FILTER_SQL}"
        psql = "psql -X -q -v ON_ERROR_STOP=1"
        (self.dir / "upsert.sh").write_text(
            "set -euo pipefail\n"
            f"cursor=$({psql} -At -d \"$DST\" -c \"SELECT coalesce(max(updated_at), "
            "'-infinity') FROM copy_pipe.contacts\")\n"
            f"{psql} -d \"$SRC\" -c \"COPY ({select} AND updated_at >= '$cursor') TO STDOUT "
            f"(FORMAT binary)\" | {psql} -1 -d \"$DST\" -f {self.dir / 'upsert.sql'}\n")
        (self.dir / "mirror.sh").write_text(
            "set -euo pipefail\n"
            f"{psql} -d \"$SRC\" -c \"COPY ({select}) TO STDOUT (FORMAT binary)\" "
            f"| {psql} -1 -d \"$DST\" -f {self.dir / 'mirror.sql'}\n")

    def reset(self, pg: Any) -> None:
        _reset_schema(pg["dst"], "copy_pipe")

    def command(self, task: str) -> list[str]:
        script = self.dir / ("mirror.sh" if task == "D" else "upsert.sh")
        return ["env", f"SRC={self.ctx.src}", f"DST={self.ctx.dst}", "bash", str(script)]


class PandasPg(Tool):
    name = "pandas"
    kind = "pandas"
    table = ("dst", "pandas_sync.contacts")

    def reset(self, pg: Any) -> None:
        _reset_schema(pg["dst"], "pandas_sync")

    def command(self, task: str) -> list[str]:
        return [self.ctx.comparator_python, str(TOOLS / "pandas_sync.py"),
                self.ctx.sa_url(self.ctx.src), self.ctx.sa_url(self.ctx.dst), "pandas_sync",
                "mirror" if task == "D" else "upsert"]


class DltPg(Tool):
    kind = "dlt"

    def __init__(self, ctx: Context, backend: str, file_format: str = "default") -> None:
        super().__init__(ctx)
        self.dlt_backend = backend
        self.file_format = file_format
        self.name = f"dlt {backend}" + ("" if file_format == "default" else f" ({file_format})")
        slug = backend if file_format == "default" else f"{backend}_{file_format}"
        self.dataset = f"dlt_{slug}"
        self.table = ("dst", f"{self.dataset}.contacts")
        self.pipelines = ctx.work / "dlt" / slug

    def reset(self, pg: Any) -> None:
        shutil.rmtree(self.pipelines, ignore_errors=True)
        self.pipelines.mkdir(parents=True)
        with pg["dst"].cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.dataset}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.dataset}_staging" CASCADE')
        pg["dst"].commit()

    def command(self, task: str) -> list[str]:
        return [self.ctx.comparator_python, str(TOOLS / "dlt_sync.py"), self.dlt_backend,
                self.ctx.sa_url(self.ctx.src), self.ctx.sa_url(self.ctx.dst), self.dataset,
                str(self.pipelines), "replace" if task == "D" else "merge", self.file_format]


# -- SQLite ----------------------------------------------------------------------------------
class SqliteTool(Tool):
    backend = "sqlite"

    def __init__(self, ctx: Context, slug: str) -> None:
        super().__init__(ctx)
        self.path = ctx.work / f"sqlite_dst_{slug}.db"

    def reset(self, pg: Any) -> None:
        data.sqlite_create_dest(self.path)


class EngineSqlite(SqliteTool):
    name = "engine"
    kind = "engine"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "engine")
        self.project = ctx.work / "engine_sqlite.yaml"
        self.project.write_text(ENGINE_PROJECT.format(
            src=f"sqlite:///{ctx.sqlite_src}", dst=f"sqlite:///{self.path}",
            resource="contacts", operation="upsert"))

    def command(self, task: str) -> list[str]:
        return [self.ctx.engine_python, str(TOOLS / "engine_sync.py"), str(self.project),
                "bench_contacts"]


class InsertSelectSqlite(SqliteTool):
    name = "INSERT..SELECT (ATTACH)"
    kind = "floor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "floor")

    def command(self, task: str) -> list[str]:
        # the engine's own connection settings (WAL, synchronous=NORMAL) for a fair floor
        sql = (f"INSERT INTO contacts ({COLS}) SELECT {COLS} FROM src.contact "
               f"WHERE {data.FILTER_SQL} "
               + UPSERT_SET.replace("IS DISTINCT FROM", "IS NOT"))
        script = (
            "import sqlite3, sys\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "con.execute('PRAGMA journal_mode=WAL'); con.execute('PRAGMA synchronous=NORMAL')\n"
            "con.execute('ATTACH DATABASE ? AS src', (sys.argv[2],))\n"
            f"con.execute('BEGIN'); con.execute({sql!r}); con.execute('COMMIT')\n"
        )
        return [self.ctx.harness_python, "-c", script, str(self.path), str(self.ctx.sqlite_src)]


def sqlite_version() -> str:
    return sqlite3.sqlite_version
