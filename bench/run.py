"""The benchmark: our engine against the database's own floor, pandas and dlt.

    bench/run              # 1,000,000 rows, 3 repeats
    bench/run --quick      # 100,000 rows, 3 repeats
    bench/run --rows 250000 --repeat 5 --out bench/results/x.md --tools engine,dlt
    bench/run --rows 20000 --repeat 1 --tasks wide-A,wide-T,wide-R,wide-F

See bench/README.md. Every measured run is a fresh process; its wall time and peak RSS are
measured from outside (wait4), and its destination is checked (row count and checksum of the
mapped columns; for wide-R and wide-F also that no row was written) before its time counts.
Runs are interleaved: each repeat does task A for every tool, then B for every tool, and so
on, so slow drift of the machine hits every tool alike. The report ends with the issue's
targets, each computed from this run's cells.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import comparators as cmp  # noqa: E402
import data  # noqa: E402
import psycopg2  # noqa: E402
from pgcluster import SETTINGS, pg_bin, postgres_cluster  # noqa: E402

TASKS = {
    "A": "full sync into an empty destination",
    "B": "the same again, nothing changed",
    "C": "incremental after 1% of rows changed",
    "D": "mirror after 1% of rows were deleted",
    "mixed-A": "the issue's first-load table (the wide table's integer, numeric, boolean, "
               "nullable text and timestamptz columns) into an empty destination, upsert by id",
    "wide-A": "the wide table (a column of every common type) into an empty destination, "
              "upsert by id",
    "wide-T": "wide-A with the mapping's column transforms (cast, map, constant, "
              "defaultValue) into an empty destination",
    "wide-R": "full refresh of wide-A's sync (full_refresh=True), nothing changed: no row "
              "may be written",
    "wide-F": "rerun of a `syncMode: full` sync of the wide table, nothing changed: no row "
              "may be written",
    "A-sqlite": "full sync into an empty destination, SQLite to SQLite",
    "wide-A-sqlite": "wide-A, SQLite to SQLite",
}
#: a task builds on the destination another leaves (`--tasks` adds it)
NEEDS = {"B": "A", "C": "A", "D": "A", "wide-R": "wide-A", "wide-F": "wide-A"}
RSS_LIMIT_MB = 250.0
TARGETS_1M = [
    ("INSERT..SELECT..ON CONFLICT in one cluster", "2.7 s"),
    ("COPY out piped into COPY in + upsert", "3.1-3.6 s"),
    ("dlt 1.31, connectorx backend", "~7 s"),
    ("dlt 1.31, pyarrow backend", "10-12 s"),
    ("dlt 1.31, sqlalchemy backend (default)", "30 s"),
    ("pandas to_sql", "9-27 s"),
]


TIME = "/usr/bin/time"  # GNU time (Debian package `time`), for the peak RSS
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Failed|Invalid|Item)\w*: ")


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _generated(what: str, generate: Callable[[], None]) -> None:
    t0 = time.perf_counter()
    generate()
    log(f"generated {what} in {time.perf_counter() - t0:.1f} s")


# -- measuring one run -----------------------------------------------------------------------
@dataclass
class Run:
    repeat: int
    task: str
    backend: str
    tool: str
    kind: str
    wall_s: float | None = None
    rss_mb: float | None = None
    ok: bool = False
    reason: str = ""
    #: rows of the checked table whose version the run wrote (xmin newer than the run's
    #: start; PostgreSQL only: inserts and updates, not deletes)
    written: int | None = None
    child: dict[str, Any] = field(default_factory=dict)


def measure(cmd: list[str], timeout: float, log_path: Path) -> dict[str, Any]:
    """Run cmd in its own process group; wall time, peak RSS (largest process of the tree,
    from wait4), exit code, timed out, last JSON line of its stdout."""
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    rss_file = Path(f"{log_path}.rss")
    rss_file.unlink(missing_ok=True)
    if Path(TIME).exists():
        # A child forked from this (big) process inherits its resident pages until exec and the
        # kernel counts them in its peak RSS: GNU time, a small C program, forks the run instead.
        cmd = [TIME, "-f", "%M", "-o", str(rss_file), *cmd]
    with open(log_path, "wb") as out, open(f"{log_path}.err", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, env=env,
                                cwd=ROOT)
        got: list[tuple[int, int, Any]] = []
        waiter = threading.Thread(target=lambda: got.append(os.wait4(proc.pid, 0)))
        waiter.start()
        try:
            waiter.join(timeout)
        except BaseException:  # Ctrl-C: take the run's process group down with us
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        timed_out = waiter.is_alive()
        if timed_out:
            os.killpg(proc.pid, signal.SIGKILL)
            waiter.join()
        wall = time.perf_counter() - t0
    _, status, usage = got[0]
    proc.returncode = os.waitstatus_to_exitcode(status)
    child: dict[str, Any] = {}
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                child = json.loads(line)
                break
            except ValueError:
                pass
    lines = Path(f"{log_path}.err").read_text(errors="replace").strip().splitlines()
    # a traceback's exception lines: the first (the root cause of a chain) and the last
    raised = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln or "error:" in ln]
    stderr_tail = list(dict.fromkeys(raised[:1] + raised[-1:])) or errors[-2:] or lines[-3:]
    rss_kb = usage.ru_maxrss
    if rss_file.exists():
        last = rss_file.read_text().strip().splitlines()[-1:]
        if last and last[0].isdigit():
            rss_kb = int(last[0])
    return {"wall": wall, "rss_mb": rss_kb / 1024, "rc": proc.returncode,
            "timed_out": timed_out, "child": child, "stderr": " | ".join(stderr_tail)}


# -- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, server: str) -> None:
        self.args = args
        self.server = server
        base = server.rsplit("/", 1)[0]
        self.work = Path(args.work_dir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "logs").mkdir(exist_ok=True)
        self.ctx = cmp.Context(
            work=self.work, pg_admin=server, src=f"{base}/bench_src", dst=f"{base}/bench_dst",
            engine_python=args.engine_python, comparator_python=args.comparator_python,
            harness_python=sys.executable, sqlite_src=self.work / "sqlite_src.db",
        )
        self.runs: list[Run] = []
        self.expected: dict[str, tuple[int, str]] = {}
        self.task_rows: dict[str, int] = {}

    # setup
    def admin(self, sql: str) -> None:
        conn = psycopg2.connect(self.server)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    def setup(self) -> None:
        n = self.args.rows
        tasks = self.args.tasks
        contact = any(cmp.SHAPES[t] is data.CONTACT for t in tasks)
        wide = not all(cmp.SHAPES[t] is data.CONTACT for t in tasks)
        for db in ("bench_src", "bench_dst"):
            self.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            self.admin(f"CREATE DATABASE {db}")
        self.pg = {"src": psycopg2.connect(self.ctx.src), "dst": psycopg2.connect(self.ctx.dst)}
        src = self.pg["src"]
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.ctx.sqlite_src}{suffix}").unlink(missing_ok=True)
        if contact:
            _generated(f"{n:,} contact rows in PostgreSQL", lambda: data.pg_generate(src, n))
            if "A-sqlite" in tasks:
                _generated(f"{n:,} contact rows in SQLite",
                           lambda: data.sqlite_generate(self.ctx.sqlite_src, n))
            self.n_active = data.pg_count(
                src, f"SELECT count(*) FROM contact WHERE {data.FILTER_SQL}")
            self.task_rows.update({
                "A": self.n_active, "B": self.n_active, "A-sqlite": self.n_active,
                "C": data.pg_count(src, f"SELECT count(*) FROM contact WHERE "
                                        f"{data.FILTER_SQL} AND {data.CHANGED_SQL}"),
                "D": data.pg_count(src, f"SELECT count(*) FROM contact WHERE "
                                        f"{data.FILTER_SQL} AND {data.DELETED_SQL}"),
            })
            self.expected["base"] = data.pg_shape_checksum(src, data.CONTACT)
        if wide:
            _generated(f"{n:,} account rows in PostgreSQL",
                       lambda: data.pg_generate_wide(src, n))
            if "wide-A-sqlite" in tasks:
                _generated(f"{n:,} account rows in SQLite",
                           lambda: data.sqlite_generate_wide(self.ctx.sqlite_src, n))
            n_wide = data.pg_count(
                src, f"SELECT count(*) FROM account WHERE {data.WIDE_FILTER_SQL}")
            self.task_rows.update({t: n_wide for t in TASKS if t.startswith(("wide-", "mixed-"))})
            self.expected["mixed"] = data.pg_shape_checksum(src, data.MIXED)
            self.expected["wide"] = data.pg_shape_checksum(src, data.WIDE)
            self.expected["wide-T"] = data.pg_shape_checksum(src, data.WIDE_T)
        for task in ("A-sqlite", "wide-A-sqlite"):
            if task in tasks:
                got = data.sqlite_shape_checksum(self.ctx.sqlite_src, cmp.SHAPES[task],
                                                 source=True)
                if got[0] != self.task_rows[task]:
                    raise SystemExit(f"SQLite and PostgreSQL sources differ ({task})")
                self.expected[task] = got
        with src.cursor() as cur:
            cur.execute("SHOW server_version")
            self.pg_version = cur.fetchone()[0]
        src.commit()
        pg_tools: list[cmp.Tool] = [
            cmp.EnginePg(self.ctx), cmp.InsertSelectPg(self.ctx), cmp.CopyPipePg(self.ctx),
            cmp.PandasPg(self.ctx),
            *[cmp.DltPg(self.ctx, *spec.split(":", 1)) for spec in self.args.dlt],
        ]
        sqlite_tools: list[cmp.Tool] = [cmp.EngineSqlite(self.ctx),
                                        cmp.InsertSelectSqlite(self.ctx)]
        wanted = self.args.tools

        def keep(t: cmp.Tool) -> bool:
            runs_some = bool(t.tasks & set(tasks))
            return runs_some and (t.kind == "floor" or not wanted or t.kind in wanted
                                  or t.name in wanted)

        self.pg_tools = [t for t in pg_tools if keep(t)]
        self.sqlite_tools = [t for t in sqlite_tools if keep(t)]

    # one run
    def checkpoint(self) -> None:
        self.admin("CHECKPOINT")

    def xid(self) -> int:
        """The server's transaction counter now (32 bits, as xmin holds it)."""
        with self.pg["dst"].cursor() as cur:
            cur.execute("SELECT txid_current() % 4294967296")
            (x,) = cur.fetchone()
        self.pg["dst"].commit()
        return int(x)

    def written_since(self, tool: cmp.Tool, task: str, xid: int) -> int | None:
        """Rows of the task's destination whose current version a transaction after `xid`
        wrote (inserted or updated); None where the table cannot be read."""
        db, table = tool.table(task)
        try:
            return data.pg_count(self.pg[db], f"SELECT count(*) FROM {table} "
                                               f"WHERE xmin::text::bigint > {xid}")
        except Exception:
            self.pg[db].rollback()
            return None

    def verify(self, tool: cmp.Tool, task: str, expected: tuple[int, str]) -> str:
        shape = cmp.SHAPES[task]
        try:
            if tool.backend == "sqlite":
                got = data.sqlite_shape_checksum(tool.path(task), shape)  # type: ignore[attr-defined]
            else:
                db, table = tool.table(task)
                got = data.pg_shape_checksum(self.pg[db], shape, table)
        except Exception as exc:  # a missing table or column, a failed run
            for conn in self.pg.values():
                conn.rollback()
            return f"destination unreadable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        if got == expected:
            return ""
        if got[0] != expected[0]:
            return f"destination has {got[0]:,} rows, expected {expected[0]:,}"
        try:  # which columns, and one row of each
            if tool.backend == "sqlite":
                detail = data.sqlite_diff(self.ctx.sqlite_src, tool.path(task), shape)  # type: ignore[attr-defined]
            else:
                detail = data.pg_diff(self.pg["src"], self.pg[db], shape, table)
        except Exception as exc:
            detail = f"(no detail: {type(exc).__name__}: {exc})"
        return f"destination content differs (checksum {got[1]} != {expected[1]}): {detail}"

    def run_one(self, rep: int, task: str, tool: cmp.Tool, expected: tuple[int, str]) -> Run:
        run = Run(rep + 1, task, tool.backend, tool.name, tool.kind)
        slug = f"r{rep + 1}_{task}_{tool.backend}_{tool.name}".replace(" ", "_").replace("/", "_")
        prep = tool.prepare(task)
        if prep is not None:  # unmeasured, but checked: the measured run builds on it
            pre = self.run_one_process(rep, f"{task}:prep", tool, prep, task, expected,
                                       f"{slug}_prep")
            if not pre.ok:
                run.reason = f"the run before it failed: {pre.reason}"
                log(f"repeat {rep + 1} task {task:8} {tool.backend:8} {tool.name:24} "
                    f"FAILED ({run.reason})")
                self.runs.append(run)
                return run
        return self.run_one_process(rep, task, tool, tool.command(task), task, expected, slug)

    def run_one_process(self, rep: int, label: str, tool: cmp.Tool, cmd: list[str], task: str,
                        expected: tuple[int, str], slug: str) -> Run:
        run = Run(rep + 1, label, tool.backend, tool.name, tool.kind)
        self.checkpoint()
        xid = self.xid() if tool.backend == "postgres" else None
        res = measure(cmd, self.args.timeout, self.work / "logs" / f"{slug}.log")
        run.wall_s, run.rss_mb, run.child = res["wall"], res["rss_mb"], res["child"]
        if xid is not None:
            run.written = self.written_since(tool, task, xid)
        stats = res["child"].get("stats") or {}
        if res["timed_out"]:
            run.reason = f"TIMEOUT after {self.args.timeout:.0f} s"
        elif res["rc"] != 0:
            detail = res["child"].get("errors") or res["stderr"]
            run.reason = f"exit {res['rc']}: {str(detail)[:500]}"
        else:
            run.reason = self.verify(tool, task, expected)
        if not run.reason and label in cmp.NO_WRITE_TASKS:
            wrote = sum(int(stats.get(k) or 0) for k in
                        ("recordsInserted", "recordsUpdated", "recordsDeleted"))
            if run.written:
                run.reason = f"wrote {run.written:,} rows (expected none: nothing changed)"
            elif run.written is None:
                run.reason = "could not count the rows written"
            elif wrote:
                run.reason = (f"the engine's stats count {wrote:,} rows inserted, updated or "
                              f"deleted (expected none)")
        run.ok = not run.reason
        state = "ok" if run.ok else f"FAILED ({run.reason})"
        wrote_s = "" if run.written is None else f" {run.written:>9,} written"
        log(f"repeat {rep + 1} task {label:8} {tool.backend:8} {tool.name:24} "
            f"{run.wall_s:8.2f} s {run.rss_mb:7.0f} MB{wrote_s}  {state}")
        self.runs.append(run)
        return run

    def repeat(self, rep: int) -> None:
        src = self.pg["src"]
        tasks = set(self.args.tasks)
        tools = self.pg_tools[rep % max(1, len(self.pg_tools)):] + \
            self.pg_tools[: rep % max(1, len(self.pg_tools))]
        broken: set[tuple[str, str]] = set()  # (tool, chain) whose chain failed this repeat

        def task(name: str, expected: tuple[int, str], among: list[cmp.Tool]) -> None:
            if name not in tasks:
                return
            chain = cmp.CHAIN_OF[name]
            for tool in among:
                if name not in tool.tasks:
                    continue
                if (tool.name, chain) in broken:
                    self.runs.append(Run(rep + 1, name, tool.backend, tool.name, tool.kind,
                                         reason="skipped: an earlier task of this repeat failed"))
                    continue
                if name == cmp.CHAINS[chain][0]:
                    tool.reset(self.pg, name)
                if not self.run_one(rep, name, tool, expected).ok:
                    broken.add((tool.name, chain))

        if tools and tasks & set(cmp.CHAINS["contact"]):
            if rep > 0 and tasks & {"C", "D"}:
                data.pg_restore(src)
                if data.pg_shape_checksum(src, data.CONTACT) != self.expected["base"]:
                    raise SystemExit("restoring the source failed")
            task("A", self.expected["base"], tools)
            task("B", self.expected["base"], tools)
            if tasks & {"C", "D"}:
                data.pg_apply_change(src)
                data.pg_vacuum(src)
                self.expected.setdefault("C", data.pg_shape_checksum(src, data.CONTACT))
                task("C", self.expected["C"], tools)
            if "D" in tasks:
                data.pg_apply_delete(src)
                data.pg_vacuum(src)
                self.expected.setdefault("D", data.pg_shape_checksum(src, data.CONTACT))
                task("D", self.expected["D"], tools)
        for name in ("mixed-A", "wide-A", "wide-T", "wide-R", "wide-F"):
            which = {"mixed-A": "mixed", "wide-T": "wide-T"}.get(name, "wide")
            task(name, self.expected.get(which, (0, "")), tools)
        for name in ("A-sqlite", "wide-A-sqlite"):
            task(name, self.expected.get(name, (0, "")), self.sqlite_tools)

    # report
    def cells(self) -> list[dict[str, Any]]:
        out = []
        order = [(t, tool) for t in TASKS if t in self.args.tasks
                 for tool in (self.sqlite_tools if t in cmp.SQLITE_TASKS else self.pg_tools)
                 if t in tool.tasks]
        for task, tool in order:
            runs = [r for r in self.runs if r.task == task and r.tool == tool.name]
            good = [r for r in runs if r.ok]
            cell: dict[str, Any] = {"task": task, "tool": tool.name, "kind": tool.kind,
                                    "runs": len(runs), "ok": len(good)}
            if runs and len(good) == len(runs):
                cell["median"] = statistics.median(r.wall_s for r in good)
                cell["work"] = statistics.median(
                    r.child.get("work_s", r.wall_s) for r in good)
                cell["rss"] = max(r.rss_mb for r in good)
                cell["rows_s"] = self.task_rows[task] / cell["median"]
                written = [r.written for r in good if r.written is not None]
                cell["written"] = max(written) if written else None
            else:
                first = next((r for r in runs if not r.ok), None)
                cell["failed"] = first.reason if first else "not run"
                if first is not None and first.wall_s is not None:
                    cell["failed_took"] = (first.wall_s, first.rss_mb)
            out.append(cell)
        for task in TASKS:
            mine = [c for c in out if c["task"] == task and "median" in c]
            floor = [c["median"] for c in mine if c["kind"] == "floor"]
            dlt = [c["median"] for c in mine if c["kind"] == "dlt"]
            for c in mine:
                c["x_floor"] = c["median"] / min(floor) if floor else None
                c["x_dlt"] = c["median"] / min(dlt) if dlt else None
        return out

    def targets(self, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The issue's targets, each a ratio of two cells of this run (medians), or why it
        cannot be given."""
        def find(task: str, name: str | None = None, kind: str | None = None) -> Any:
            mine = [c for c in cells if c["task"] == task
                    and (name is None or c["tool"] == name) and (kind is None or c["kind"] == kind)]
            if not mine:
                return None, f"{task}: not run" if task not in self.args.tasks else \
                    f"{task}: no {name or kind} cell"
            good = [c for c in mine if "median" in c]
            if not good:
                return None, f"{task} / {mine[0]['tool']}: FAILED ({mine[0]['failed']})"
            return min(good, key=lambda c: c["median"]), ""

        out: list[dict[str, Any]] = []

        def ratio(target: str, num: tuple[str, str | None, str | None],
                  den: tuple[str, str | None, str | None], limit: float,
                  at_most: bool = True, extra: str = "") -> None:
            a, why_a = find(*num)
            b, why_b = find(*den)
            row: dict[str, Any] = {"target": target, "limit": limit}
            if a is None or b is None:
                row.update(status="not measured",
                           detail="; ".join(dict.fromkeys(w for w in (why_a, why_b) if w)))
            else:
                r = a["median"] / b["median"]
                dlt = [c for c in cells if c["task"] == num[0] and c["kind"] == "dlt"] \
                    if "dlt" in (num[2], den[2]) else []
                bad = [c["tool"] for c in dlt if "median" not in c]
                if bad:
                    extra += (f" (of {len(dlt)} dlt configurations, FAILED: "
                              f"{', '.join(bad)})")
                row.update(ratio=r, status="met" if (r <= limit if at_most else r >= limit)
                           else "NOT MET",
                           detail=f"{a['task']} {a['tool']} {a['median']:.2f} s / "
                                  f"{b['task']} {b['tool']} {b['median']:.2f} s{extra}")
            out.append(row)

        engine = ("engine", None)
        copy_pipe = ("COPY pipe", None)
        for task, what in (("mixed-A", "first load of the target's table"),
                           ("wide-A", "first load of every common type")):
            ratio(f"{what} ({task}): engine <= 1.5x the COPY-pipe floor",
                  (task, *engine), (task, *copy_pipe), 1.5)
            ratio(f"{what} ({task}): engine at least 2x faster than dlt's fastest "
                  "configuration (dlt / engine >= 2)",
                  (task, None, "dlt"), (task, *engine), 2.0, at_most=False)
        for task, what in (("wide-R", "full refresh (full_refresh=True)"),
                           ("wide-F", "`syncMode: full` rerun")):
            first, _ = find("wide-A", "COPY pipe")
            eng, _ = find(task, "engine")
            also = "" if first is None or eng is None else \
                f"; {eng['median'] / first['median']:.2f}x COPY pipe's first load (wide-A)"
            ratio(f"{what}, nothing changed ({task}): engine <= 1.5x the floor's full load "
                  "(COPY pipe's full load in the same task), writing no row",
                  (task, *engine), (task, *copy_pipe), 1.5,
                  extra=f"; no row written (xmin count and the engine's stats, every run){also}")
        ratio("incremental after 1% changed (C): engine <= 2x the COPY-pipe floor",
              ("C", *engine), ("C", *copy_pipe), 2.0)
        ratio("incremental after 1% changed (C): engine <= half of dlt's fastest (engine / "
              "dlt <= 0.5)", ("C", *engine), ("C", None, "dlt"), 0.5)
        for task in ("A-sqlite", "wide-A-sqlite"):
            ratio(f"SQLite -> SQLite first load ({task}): engine <= 3x ATTACH + INSERT ... "
                  "SELECT", (task, *engine), (task, "INSERT..SELECT (ATTACH)", None), 3.0)
        # peak RSS: the engine's highest over this run's tasks
        mine = [c for c in cells if c["kind"] == "engine" and "rss" in c]
        peak = max(mine, key=lambda c: c["rss"]) if mine else None
        row: dict[str, Any] = {"target": f"engine peak RSS <= {RSS_LIMIT_MB:.0f} MB at "
                                         "1,000,000 rows", "limit": RSS_LIMIT_MB}
        if peak is None:
            row.update(status="not measured", detail="no engine cell succeeded")
        else:
            at = "" if self.args.rows == 1_000_000 else \
                f" (this run has {self.args.rows:,} rows: indicative only)"
            row.update(ratio=peak["rss"], status="met" if peak["rss"] <= RSS_LIMIT_MB
                       else "NOT MET", detail=f"highest: {peak['task']} {peak['rss']:.0f} MB"
                                              f"{at}")
        out.append(row)
        out.append(self.rss_vs_baseline(mine))
        return out

    def rss_vs_baseline(self, mine: list[dict[str, Any]]) -> dict[str, Any]:
        row: dict[str, Any] = {"target": "engine peak RSS within 20% of the 100,000-row figure "
                                         "(same tasks)", "limit": 1.2}
        base = self.args.rss_baseline
        if self.args.rows == 100_000:
            row.update(status="not measured", detail="this run is the 100,000-row figure")
            return row
        if base is None:
            row.update(status="not measured", detail="no 100,000-row run to compare with "
                       "(give --rss-baseline FILE.json)")
            return row
        try:
            saved = json.loads(Path(base).read_text())
            runs, base_rows = saved["runs"], saved["args"]["rows"]
        except (OSError, ValueError, KeyError) as exc:
            row.update(status="not measured", detail=f"{base}: {exc}")
            return row
        if base_rows != 100_000:
            row.update(status="not measured",
                       detail=f"{Path(base).name} has {base_rows:,} rows, not 100,000")
            return row
        then: dict[str, float] = {}
        for r in runs:
            if r["kind"] == "engine" and r["ok"] and ":" not in r["task"]:
                then[r["task"]] = max(then.get(r["task"], 0.0), r["rss_mb"])
        now = {c["task"]: c["rss"] for c in mine if c["task"] in then}
        if not now:
            row.update(status="not measured", detail=f"{base} has none of this run's tasks")
            return row
        a, b = max(now.values()), max(then[t] for t in now)
        row.update(ratio=a / b, status="met" if a / b <= 1.2 else "NOT MET",
                   detail=f"{a:.0f} MB at {self.args.rows:,} rows / {b:.0f} MB in "
                          f"{Path(base).name}, tasks {', '.join(sorted(now))}")
        return row

    def report(self, started: float) -> str:
        a = self.args
        cells = self.cells()
        self.cell_list, self.target_list = cells, self.targets(cells)
        lines = [
            f"# sync_assets benchmark, {a.rows:,} rows",
            "",
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {a.repeat} "
            f"repeat{'s' if a.repeat != 1 else ''}, interleaved; whole run "
            f"{(time.perf_counter() - started) / 60:.1f} min.",
            "",
            "| task | tool | median s | rows/s | peak RSS MB | x floor | x dlt best | "
            "in-process s | rows written | runs ok |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        for c in cells:
            if "median" in c:
                lines.append(
                    f"| {c['task']} | {c['tool']} | {c['median']:.2f} | {c['rows_s']:,.0f} | "
                    f"{c['rss']:.0f} | {fmt(c['x_floor'], '.1f')} | {fmt(c['x_dlt'], '.2f')} | "
                    f"{c['work']:.2f} | {fmt(c['written'], ',')} | {c['ok']}/{c['runs']} |")
            else:
                lines.append(f"| {c['task']} | {c['tool']} | FAILED | | | | | | | "
                             f"{c['ok']}/{c['runs']} |")
        failed = [c for c in cells if "failed" in c]
        if failed:
            lines += ["", "Failed cells (first failure):", ""]
            lines += [f"- {c['task']} / {c['tool']}: {c['failed']}" + (
                "" if "failed_took" not in c else
                f" (that run took {c['failed_took'][0]:.2f} s, {c['failed_took'][1]:.0f} MB: "
                "not a result)") for c in failed]
        rows = self.task_rows
        lines += [
            "",
            "Tasks: " + "; ".join(f"**{k}** {v}" for k, v in TASKS.items()
                                  if k in a.tasks) + ".",
            "rows/s: rows the task is about divided by the median: A, B, A-sqlite "
            f"{rows.get('A', 0):,} (every filtered row, written or checked), "
            f"C {rows.get('C', 0):,} (filtered rows changed), "
            f"D {rows.get('D', 0):,} (filtered rows deleted), mixed-A and the wide tasks "
            f"{rows.get('wide-A', 0):,} (every filtered row, written or checked).",
            "median s: wall time of the whole process (interpreter start and imports "
            "included); in-process s: the tool's own time after its imports (engine, pandas, "
            "dlt; = wall for psql). x floor: median / fastest floor (INSERT..SELECT, COPY "
            "pipe) of the task; x dlt best: median / fastest dlt backend of the task. Peak "
            "RSS: the largest process of the run's process tree (the PostgreSQL server's "
            "memory is not counted). rows written: the most rows of the destination table "
            "one run left in a version it wrote (xmin newer than the run's start: inserts "
            "and updates, not deletes; PostgreSQL only).",
            "",
            f"## Targets (issue #15; stated for 1,000,000 rows, this run has {a.rows:,})",
            "",
            "Each from this run's cells: medians of the same run.",
            "",
            "| target | measured | limit | status | from |",
            "|---|--:|--:|---|---|",
        ]
        for t in self.target_list:
            measured = "-" if "ratio" not in t else (
                f"{t['ratio']:.0f} MB" if "MB" in t["target"] and "20%" not in t["target"]
                else f"{t['ratio']:.2f}x")
            limit = (f"{t['limit']:.0f} MB" if "MB" in t["target"] and "20%" not in t["target"]
                     else f"{t['limit']:g}x")
            lines.append(f"| {t['target']} | {measured} | {limit} | {t['status']} | "
                         f"{t['detail']} |")
        lines += [
            "",
            "## Machine",
            "",
            *[f"- {k}: {v}" for k, v in self.machine().items()],
            "",
            "## Reference figures (1,000,000 rows, task A, measured earlier on these machines)",
            "",
            *[f"- {k}: {v}" for k, v in TARGETS_1M],
        ]
        return "\n".join(lines) + "\n"

    def machine(self) -> dict[str, str]:
        cpu = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next((ln.split(":", 1)[1].strip() for ln in
                    Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")),
                   "?")
        versions = subprocess.run(
            [self.args.comparator_python, "-c",
             "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
             "('dlt', 'connectorx', 'pyarrow', 'pandas', 'SQLAlchemy', 'psycopg2-binary')))"],
            capture_output=True, text=True).stdout.strip()
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "sync_assets"],
                               capture_output=True, text=True).stdout.strip()
        return {
            "cores": f"{os.cpu_count()} ({cpu})",
            "memory": mem,
            "load average at start": self.load_at_start,
            "PostgreSQL": f"{self.pg_version}, one local cluster, settings: -F (fsync off), "
                          + ", ".join(f"{k}={v}" for k, v in SETTINGS.items()),
            "SQLite": cmp.sqlite_version(),
            "Python": platform.python_version(),
            "comparators (bench/.venv)": versions,
            "sync_assets": f"{commit}{' + uncommitted changes in sync_assets/' if dirty else ''}"
                           f" (run from {self.args.engine_python})",
            "per-run timeout": f"{self.args.timeout:.0f} s",
            "wide table": f"intervals with months in {self.args.interval_months:.0%} of the rows"
                          + ("" if self.args.interval_months else
                             " (left out: a shape users have, not benchmarked here)"),
            "peak RSS measured by": "GNU time (%M)" if Path(TIME).exists() else
                                    "wait4 (counts the harness's pages before exec: ~60 MB floor)",
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="100,000 rows (unless --rows is given)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", help="Markdown file (default bench/results/<timestamp>.md); the raw "
                                 "runs go beside it as .json")
    p.add_argument("--timeout", type=float, help="seconds per run (default 3600; 600 if --quick)")
    p.add_argument("--tools", default="", help="comma list of kinds or names to run besides "
                   "the floors: engine, pandas, dlt, 'dlt pyarrow', ... (default all)")
    p.add_argument("--dlt", default="connectorx:csv,pyarrow:csv,sqlalchemy",
                   help="dlt configurations, comma list of BACKEND[:LOADER_FILE_FORMAT]; no "
                        "format = dlt's default (insert_values). Default: %(default)s")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help="comma list of tasks to run (a task another builds on is added: B, C "
                        "and D need A, wide-R and wide-F need wide-A). Default: %(default)s")
    p.add_argument("--rss-baseline", help="a 100,000-row run's .json to compare the engine's "
                   "peak RSS with (default: the newest bench/results/*-100000.json)")
    p.add_argument("--interval-months", type=float, default=data.MONTHS_SHARE,
                   help="share of the wide table's intervals with months (default %(default)s; "
                        "0 leaves out a shape, which the report then says)")
    p.add_argument("--backends", default="postgres,sqlite")
    p.add_argument("--pg-url", help="an existing server (superuser libpq URL) instead of a "
                                    "throw-away cluster; databases bench_src and bench_dst are "
                                    "dropped and created there")
    p.add_argument("--work-dir", default=str(HERE / ".work"))
    p.add_argument("--engine-python", default=str(ROOT / ".venv" / "bin" / "python"))
    p.add_argument("--comparator-python", default=str(HERE / ".venv" / "bin" / "python"))
    args = p.parse_args()
    if args.quick and "--rows" not in sys.argv:
        args.rows = 100_000
    if args.timeout is None:
        args.timeout = 600.0 if args.rows <= 100_000 else 3600.0
    args.tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    args.dlt = [d.strip() for d in args.dlt.split(",") if d.strip()]
    args.backends = {b.strip() for b in args.backends.split(",")}
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    for t in list(wanted):
        if t in NEEDS and NEEDS[t] not in wanted:
            log(f"task {t} builds on {NEEDS[t]}: running {NEEDS[t]} too")
            wanted.append(NEEDS[t])
    if "postgres" not in args.backends:
        wanted = [t for t in wanted if t in cmp.SQLITE_TASKS]
    if "sqlite" not in args.backends:
        wanted = [t for t in wanted if t not in cmp.SQLITE_TASKS]
    args.tasks = [t for t in TASKS if t in wanted]
    if not args.tasks:
        raise SystemExit("no task left to run")
    data.MONTHS_SHARE = args.interval_months
    if args.rss_baseline is None and args.rows != 100_000:
        found = sorted((HERE / "results").glob("*-100000.json"))
        args.rss_baseline = str(found[-1]) if found else None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else HERE / "results" / f"{stamp}-{args.rows}.md"
    for exe in (args.engine_python, args.comparator_python):
        if not Path(exe).exists():
            raise SystemExit(f"{exe} missing: run bench/setup first")
    pg_bin("psql")

    started = time.perf_counter()
    load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cluster = None
    if args.pg_url:
        server = args.pg_url
    else:
        cluster = postgres_cluster()
        server = cluster.__enter__()
        log(f"PostgreSQL cluster started ({server})")
    try:
        bench = Bench(args, server)
        bench.load_at_start = load_at_start
        bench.setup()
        for rep in range(args.repeat):
            log(f"repeat {rep + 1} of {args.repeat}")
            bench.repeat(rep)
        for conn in bench.pg.values():
            conn.close()
        report = bench.report(started)
    finally:
        if cluster is not None:
            cluster.__exit__(None, None, None)
            log("PostgreSQL cluster stopped")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
         "task_rows": bench.task_rows, "cells": bench.cell_list, "targets": bench.target_list,
         "runs": [asdict(r) for r in bench.runs]}, indent=1, default=str))
    for scratch in bench.work.glob("*.db*"):  # the SQLite files: ~1 GB at 1M rows
        scratch.unlink()
    print(report)
    log(f"written to {out} (and {out.with_suffix('.json').name})")


if __name__ == "__main__":
    main()
