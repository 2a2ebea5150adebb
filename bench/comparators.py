"""The tools measured: our engine and the comparators, each as a command run in a fresh process.

Every tool owns one destination table per chain of tasks (a schema of its own per chain on
PostgreSQL, a file of its own on SQLite), knows how to empty it before the chain's first
task, how to run each task, and where its result is to be checked. What a task's destination
holds is a `data.Shape` (SHAPES): its columns, types, key, and the SQL of its transforms.

PostgreSQL (source database bench_src, destination database bench_dst, one server):
  engine            sync_assets, the project YAML of the issue (upsert by email, incremental on
                    updated_at, batchSize 10000; task D: operation sync, the mirror); the
                    account tasks: upsert by id, incremental on updated_at (mixed-A, wide-A,
                    wide-T with the transforms, wide-R run with full_refresh=True), wide-F a
                    second sync of the same table with syncMode: full
  INSERT..SELECT    the floor: one INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE ... WHERE
                    changed, by psql, inside ONE database (the destination is the schema
                    floor_sql* of bench_src: PostgreSQL cannot INSERT ... SELECT across
                    databases); incremental from the destination's max(updated_at); D adds a
                    DELETE of the rows that left the filtered source; wide-R and wide-F its
                    full load (no cursor) again; wide-T the transforms in the SELECT
  COPY pipe         the floor across databases: psql COPY (SELECT ...) TO STDOUT (binary) piped
                    into psql COPY into a temporary table of bench_dst, then the same upsert
                    (D: the full filtered table, upsert, delete what is missing)
  pandas            read_sql + to_sql into a staging table + the same upsert (bench/tools;
                    the contact tasks)
  dlt <backend>     dlt 1.31 sql_table -> postgres, merge on the key, incremental on
                    updated_at; D: write disposition replace (bench/tools/dlt_sync.py); "(csv)":
                    loader file format csv (COPY), dlt's documented fast path for arrow data on
                    postgres; no suffix: dlt's defaults. Tasks A-D, mixed-A and wide-A (there
                    the interval column read as text: no dlt backend loads an interval)
SQLite (source src.db, one destination file per tool and table):
  engine            the same syncs, SQLite to SQLite (A-sqlite, wide-A-sqlite)
  INSERT..SELECT    ATTACH DATABASE src.db, then INSERT INTO ... SELECT ... ON CONFLICT
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
from data import Shape

HERE = Path(__file__).resolve().parent
TOOLS = HERE / "tools"

#: what each task's destination holds
SHAPES: dict[str, Shape] = {
    "A": data.CONTACT, "B": data.CONTACT, "C": data.CONTACT, "D": data.CONTACT,
    "mixed-A": data.MIXED,
    "wide-A": data.WIDE, "wide-T": data.WIDE_T, "wide-R": data.WIDE, "wide-F": data.WIDE,
    "A-sqlite": data.CONTACT, "wide-A-sqlite": data.WIDE,
}
#: the chain a task belongs to: a chain's first task empties the tool's destination, the
#: later ones build on it (a failed run skips the rest of its chain in that repeat)
CHAINS: dict[str, list[str]] = {
    "contact": ["A", "B", "C", "D"],
    "mixed": ["mixed-A"],
    "wide": ["wide-A", "wide-R", "wide-F"],
    "wide_t": ["wide-T"],
    "sqlite": ["A-sqlite"],
    "wide_sqlite": ["wide-A-sqlite"],
}
CHAIN_OF = {task: chain for chain, tasks in CHAINS.items() for task in tasks}
#: the schema suffix of each PostgreSQL chain (the engine keeps its state there too)
SUFFIX = {"contact": "", "mixed": "_mixed", "wide": "_wide", "wide_t": "_wide_t"}
PG_TASKS = frozenset(t for c in SUFFIX for t in CHAINS[c])
SQLITE_TASKS = frozenset(("A-sqlite", "wide-A-sqlite"))
#: tasks after which the destination must not have changed: no row may be written
NO_WRITE_TASKS = frozenset(("wide-R", "wide-F"))


def floor_mode(task: str) -> str:
    """How a floor runs a task: upsert from the cursor, mirror, or its full load again."""
    return "mirror" if task == "D" else "full" if task in ("wide-R", "wide-F") else "upsert"


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
    #: the tasks this tool runs
    tasks: frozenset[str] = PG_TASKS
    #: the schema of its contact destination ('' where it has none); the other chains' are
    #: this with SUFFIX, in the database `db`
    schema = ""
    db = "dst"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def schema_of(self, task: str) -> str:
        return self.schema + SUFFIX[CHAIN_OF[task]]

    def table(self, task: str) -> tuple[str, str]:
        """Where a task's result is checked on PostgreSQL: (database 'src'/'dst', table)."""
        return self.db, f"{self.schema_of(task)}.{SHAPES[task].table}"

    def reset(self, pg: Any, task: str) -> None:
        """Empty destination (and no state) before the first task of a chain."""
        schema = self.schema_of(task)
        conn = pg[self.db]
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'CREATE SCHEMA "{schema}"')
            cur.execute(SHAPES[task].pg_ddl(f"{schema}.{SHAPES[task].table}"))
        conn.commit()

    def command(self, task: str) -> list[str]:
        raise NotImplementedError

    def prepare(self, task: str) -> list[str] | None:
        """A run before the task's measured one (not measured; checked), or None."""
        return None


# -- PostgreSQL ------------------------------------------------------------------------------
ENGINE_PROJECT = """\
objectstack: {{url: "{src}"}}
connectors:
  warehouse: {{type: sql, url: "{dst}"}}
syncs:
{syncs}"""
ENGINE_SYNC = """\
  - name: {name}
    source: {{object: {source}, filters: {filters}}}
    destination:
      connectorInstanceId: warehouse
      externalResource: {resource}
      operation: {operation}
      matchKey: {key}
      mapping: {mapping}
    syncMode: {mode}
{cursor}    batchSize: 10000
"""
CURSOR = "    changeTrackingField: updated_at\n"
FILTERS = {"contact": {"status": "active"}, "account": {"status": "open"}}


def engine_sync(name: str, shape: Shape, resource: str, operation: str = "upsert",
                mode: str = "incremental") -> str:
    return ENGINE_SYNC.format(
        name=name, source=shape.source, filters=json.dumps(FILTERS[shape.source]),
        resource=resource, operation=operation, key=json.dumps(list(shape.key)),
        mapping=json.dumps(shape.mapping()), mode=mode,
        cursor=CURSOR if mode == "incremental" else "")


class EnginePg(Tool):
    name = "engine"
    kind = "engine"
    schema = "engine"  # the engine keeps its state in the destination's schema too

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "engine_pg"
        self.dir.mkdir(parents=True, exist_ok=True)
        urls = {"src": ctx.sa_url(ctx.src), "dst": ctx.sa_url(ctx.dst)}
        for op in ("upsert", "sync"):
            (self.dir / f"{op}.yaml").write_text(ENGINE_PROJECT.format(
                **urls, syncs=engine_sync("bench_contacts", data.CONTACT, "engine.contacts",
                                          op)))
        (self.dir / "wide.yaml").write_text(ENGINE_PROJECT.format(**urls, syncs="".join((
            engine_sync("bench_accounts_m", data.MIXED, "engine_mixed.accounts_m"),
            engine_sync("bench_accounts", data.WIDE, "engine_wide.accounts"),
            engine_sync("bench_accounts_full", data.WIDE, "engine_wide.accounts",
                        mode="full"),
            engine_sync("bench_accounts_t", data.WIDE_T, "engine_wide_t.accounts_t"),
        ))))

    def command(self, task: str) -> list[str]:
        run = [self.ctx.engine_python, str(TOOLS / "engine_sync.py")]
        if task in ("A", "B", "C", "D"):
            op = "sync" if task == "D" else "upsert"
            return [*run, str(self.dir / f"{op}.yaml"), "bench_contacts"]
        wide = str(self.dir / "wide.yaml")
        return {
            "mixed-A": [*run, wide, "bench_accounts_m"],
            "wide-A": [*run, wide, "bench_accounts"],
            "wide-T": [*run, wide, "bench_accounts_t"],
            "wide-R": [*run, wide, "bench_accounts", "--full-refresh"],
            "wide-F": [*run, wide, "bench_accounts_full"],
        }[task]

    def prepare(self, task: str) -> list[str] | None:
        # wide-F measures a *rerun* of the syncMode: full sync: its first run (on the table
        # wide-A loaded, comparing every row) goes before, unmeasured
        return self.command(task) if task == "wide-F" else None


class InsertSelectPg(Tool):
    name = "INSERT..SELECT (1 db)"
    kind = "floor"
    schema = "floor_sql"
    db = "src"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "floor_sql"
        self.dir.mkdir(parents=True, exist_ok=True)

    def script(self, task: str) -> Path:
        shape, mode = SHAPES[task], floor_mode(task)
        table = f"{self.schema_of(task)}.{shape.table}"
        select = shape.select_sql(f"public.{shape.source}")
        sql = ""
        if mode == "upsert":
            sql = ("SELECT coalesce(max(updated_at), '-infinity') AS cursor "
                   f"FROM {table} \\gset\n")
            select += " AND updated_at >= :'cursor'"
        sql += (f"INSERT INTO {table} ({shape.col_list})\n{select}\n"
                f"{shape.upsert_set(shape.table)};\n")
        if mode == "mirror":  # delete what left the filtered source
            match = " AND ".join(f"s.{k} = d.{k}" for k in shape.key)
            sql += (f"DELETE FROM {table} d WHERE NOT EXISTS (SELECT 1 FROM public.{shape.source}"
                    f" s WHERE {match} AND s.{shape.filter_sql});\n")
        path = self.dir / f"{CHAIN_OF[task]}_{mode}.sql"
        path.write_text(sql)
        return path

    def command(self, task: str) -> list[str]:
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", self.ctx.src,
                "-f", str(self.script(task))]


class CopyPipePg(Tool):
    name = "COPY pipe"
    kind = "floor"
    schema = "copy_pipe"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.dir = ctx.work / "copy_pipe"
        self.dir.mkdir(parents=True, exist_ok=True)

    def script(self, task: str) -> Path:
        shape, mode = SHAPES[task], floor_mode(task)
        table = f"{self.schema_of(task)}.{shape.table}"
        stem = self.dir / f"{CHAIN_OF[task]}_{mode}"
        load = (f"CREATE TEMP TABLE stage (LIKE {table}) ON COMMIT DROP;\n"
                "\\copy stage FROM pstdin (FORMAT binary)\n")
        upsert = (f"INSERT INTO {table} ({shape.col_list}) SELECT {shape.col_list} FROM stage\n"
                  f"{shape.upsert_set(shape.table)};\n")
        if mode == "mirror":
            match = " AND ".join(f"s.{k} = d.{k}" for k in shape.key)
            sql = (load + "ANALYZE stage;\n" + upsert
                   + f"DELETE FROM {table} d WHERE NOT EXISTS "
                     f"(SELECT 1 FROM stage s WHERE {match});\n")
        else:
            sql = load + upsert
        Path(f"{stem}.sql").write_text(sql)
        select = shape.select_sql(f"public.{shape.source}", typed=True)
        psql = "psql -X -q -v ON_ERROR_STOP=1"
        sh = "set -euo pipefail\n"
        if mode == "upsert":
            sh += (f"cursor=$({psql} -At -d \"$DST\" -c \"SELECT coalesce(max(updated_at), "
                   f"'-infinity') FROM {table}\")\n")
            select += " AND updated_at >= '$cursor'"
        sh += (f"{psql} -d \"$SRC\" -c \"COPY ({select}) TO STDOUT (FORMAT binary)\" "
               f"| {psql} -1 -d \"$DST\" -f {stem}.sql\n")
        Path(f"{stem}.sh").write_text(sh)
        return Path(f"{stem}.sh")

    def command(self, task: str) -> list[str]:
        return ["env", f"SRC={self.ctx.src}", f"DST={self.ctx.dst}", "bash",
                str(self.script(task))]


class PandasPg(Tool):
    name = "pandas"
    kind = "pandas"
    schema = "pandas_sync"
    tasks = frozenset(CHAINS["contact"])

    def command(self, task: str) -> list[str]:
        return [self.ctx.comparator_python, str(TOOLS / "pandas_sync.py"),
                self.ctx.sa_url(self.ctx.src), self.ctx.sa_url(self.ctx.dst), "pandas_sync",
                "mirror" if task == "D" else "upsert"]


class DltPg(Tool):
    kind = "dlt"
    tasks = frozenset([*CHAINS["contact"], "mixed-A", "wide-A"])

    def __init__(self, ctx: Context, backend: str, file_format: str = "default") -> None:
        super().__init__(ctx)
        self.dlt_backend = backend
        self.file_format = file_format
        self.name = f"dlt {backend}" + ("" if file_format == "default" else f" ({file_format})")
        self.slug = backend if file_format == "default" else f"{backend}_{file_format}"
        self.schema = f"dlt_{self.slug}"  # dlt's dataset; it creates its tables itself

    def pipelines(self, task: str) -> Path:
        return self.ctx.work / "dlt" / (self.slug + SUFFIX[CHAIN_OF[task]])

    def reset(self, pg: Any, task: str) -> None:
        shutil.rmtree(self.pipelines(task), ignore_errors=True)
        self.pipelines(task).mkdir(parents=True)
        dataset = self.schema_of(task)
        with pg["dst"].cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
        pg["dst"].commit()

    def command(self, task: str) -> list[str]:
        cmd = [self.ctx.comparator_python, str(TOOLS / "dlt_sync.py"), self.dlt_backend,
               self.ctx.sa_url(self.ctx.src), self.ctx.sa_url(self.ctx.dst),
               self.schema_of(task), str(self.pipelines(task)),
               "replace" if task == "D" else "merge", self.file_format]
        shape = SHAPES[task]
        if shape is not data.CONTACT:
            cmd += ["--table", shape.source, "--dest-table", shape.table,
                    "--columns", ",".join(c.source_sql for c in shape.columns),
                    "--where", shape.filter_sql, "--key", ",".join(shape.key)]
            text = [c.name for c in shape.columns if c.pg == "interval"]
            if text:  # dlt loads no interval: its documented way round, read as text
                cmd += ["--text-columns", ",".join(text)]
        return cmd


# -- SQLite ----------------------------------------------------------------------------------
class SqliteTool(Tool):
    backend = "sqlite"
    tasks = SQLITE_TASKS

    def __init__(self, ctx: Context, slug: str) -> None:
        super().__init__(ctx)
        self.slug = slug

    def path(self, task: str) -> Path:
        wide = "_wide" if task == "wide-A-sqlite" else ""
        return self.ctx.work / f"sqlite_dst_{self.slug}{wide}.db"

    def reset(self, pg: Any, task: str) -> None:
        data.sqlite_create_table(self.path(task), SHAPES[task])


class EngineSqlite(SqliteTool):
    name = "engine"
    kind = "engine"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "engine")
        self.projects = {}
        for task, sync in (("A-sqlite", "bench_contacts"), ("wide-A-sqlite", "bench_accounts")):
            shape = SHAPES[task]
            project = ctx.work / f"engine_sqlite{'_wide' if shape is data.WIDE else ''}.yaml"
            project.write_text(ENGINE_PROJECT.format(
                src=f"sqlite:///{ctx.sqlite_src}", dst=f"sqlite:///{self.path(task)}",
                syncs=engine_sync(sync, shape, shape.table)))
            self.projects[task] = (project, sync)

    def command(self, task: str) -> list[str]:
        project, sync = self.projects[task]
        return [self.ctx.engine_python, str(TOOLS / "engine_sync.py"), str(project), sync]


class InsertSelectSqlite(SqliteTool):
    name = "INSERT..SELECT (ATTACH)"
    kind = "floor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "floor")

    def command(self, task: str) -> list[str]:
        # the engine's own connection settings (WAL, synchronous=NORMAL) for a fair floor
        shape = SHAPES[task]
        sql = (f"INSERT INTO {shape.table} ({shape.col_list}) "
               f"{shape.select_sql(f'src.{shape.source}', 'sqlite')} "
               + shape.upsert_set(shape.table, "IS NOT"))
        script = (
            "import sqlite3, sys\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "con.execute('PRAGMA journal_mode=WAL'); con.execute('PRAGMA synchronous=NORMAL')\n"
            "con.execute('ATTACH DATABASE ? AS src', (sys.argv[2],))\n"
            f"con.execute('BEGIN'); con.execute({sql!r}); con.execute('COMMIT')\n"
        )
        return [self.ctx.harness_python, "-c", script, str(self.path(task)),
                str(self.ctx.sqlite_src)]


def sqlite_version() -> str:
    return sqlite3.sqlite_version
