"""The benchmark: our engine against the database's own floor, pandas and dlt.

    bench/run              # 1,000,000 rows, 3 repeats
    bench/run --quick      # 100,000 rows, 3 repeats
    bench/run --rows 250000 --repeat 5 --out bench/results/x.md --tools engine,dlt

See bench/README.md. Every measured run is a fresh process; its wall time and peak RSS are
measured from outside (wait4), and its destination is checked (row count and checksum of the
mapped columns) before its time counts. Runs are interleaved: each repeat does task A for every
tool, then B for every tool, and so on, so slow drift of the machine hits every tool alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
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
    "A-sqlite": "full sync into an empty destination, SQLite to SQLite",
}
TARGETS_1M = [
    ("INSERT..SELECT..ON CONFLICT in one cluster", "2.7 s"),
    ("COPY out piped into COPY in + upsert", "3.1-3.6 s"),
    ("dlt 1.31, connectorx backend", "~7 s"),
    ("dlt 1.31, pyarrow backend", "10-12 s"),
    ("dlt 1.31, sqlalchemy backend (default)", "30 s"),
    ("pandas to_sql", "9-27 s"),
]


TIME = "/usr/bin/time"  # GNU time (Debian package `time`), for the peak RSS


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln or "error:" in ln]
    stderr_tail = errors[-2:] or lines[-3:]
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
        for db in ("bench_src", "bench_dst"):
            self.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            self.admin(f"CREATE DATABASE {db}")
        self.pg = {"src": psycopg2.connect(self.ctx.src), "dst": psycopg2.connect(self.ctx.dst)}
        t0 = time.perf_counter()
        data.pg_generate(self.pg["src"], n)
        log(f"generated {n:,} rows in PostgreSQL in {time.perf_counter() - t0:.1f} s")
        if "sqlite" in self.args.backends:
            t0 = time.perf_counter()
            data.sqlite_generate(self.ctx.sqlite_src, n)
            log(f"generated {n:,} rows in SQLite in {time.perf_counter() - t0:.1f} s")
        src = self.pg["src"]
        self.n_active = data.pg_count(src, f"SELECT count(*) FROM contact WHERE {data.FILTER_SQL}")
        self.task_rows = {
            "A": self.n_active, "B": self.n_active, "A-sqlite": self.n_active,
            "C": data.pg_count(src, f"SELECT count(*) FROM contact WHERE {data.FILTER_SQL} "
                                    f"AND {data.CHANGED_SQL}"),
            "D": data.pg_count(src, f"SELECT count(*) FROM contact WHERE {data.FILTER_SQL} "
                                    f"AND {data.DELETED_SQL}"),
        }
        self.expected["base"] = data.pg_checksum(src, "contact", data.FILTER_SQL)
        if "sqlite" in self.args.backends:
            self.expected["sqlite"] = data.sqlite_checksum(self.ctx.sqlite_src, "contact",
                                                           data.FILTER_SQL)
            if self.expected["sqlite"][0] != self.n_active:
                raise SystemExit("SQLite and PostgreSQL sources differ")
        with self.pg["src"].cursor() as cur:
            cur.execute("SHOW server_version")
            self.pg_version = cur.fetchone()[0]
        self.pg["src"].commit()
        pg_tools: list[cmp.Tool] = [
            cmp.EnginePg(self.ctx), cmp.InsertSelectPg(self.ctx), cmp.CopyPipePg(self.ctx),
            cmp.PandasPg(self.ctx),
            *[cmp.DltPg(self.ctx, *spec.split(":", 1)) for spec in self.args.dlt],
        ]
        sqlite_tools: list[cmp.Tool] = [cmp.InsertSelectSqlite(self.ctx)]
        sqlite_tools.insert(0, cmp.EngineSqlite(self.ctx))
        wanted = self.args.tools

        def keep(t: cmp.Tool) -> bool:
            return t.kind == "floor" or not wanted or t.kind in wanted or t.name in wanted

        self.pg_tools = [t for t in pg_tools if keep(t)] if "postgres" in self.args.backends else []
        self.sqlite_tools = ([t for t in sqlite_tools if keep(t)]
                             if "sqlite" in self.args.backends else [])

    # one run
    def checkpoint(self) -> None:
        self.admin("CHECKPOINT")

    def verify(self, tool: cmp.Tool, expected: tuple[int, str]) -> str:
        try:
            if tool.backend == "sqlite":
                got = data.sqlite_checksum(tool.path, "contacts")  # type: ignore[attr-defined]
            else:
                db, table = tool.table
                got = data.pg_checksum(self.pg[db], table)
        except Exception as exc:  # a missing table, a failed run
            for conn in self.pg.values():
                conn.rollback()
            return f"destination unreadable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        if got == expected:
            return ""
        if got[0] != expected[0]:
            return f"destination has {got[0]:,} rows, expected {expected[0]:,}"
        return f"destination content differs (checksum {got[1]} != {expected[1]})"

    def run_one(self, rep: int, task: str, tool: cmp.Tool, expected: tuple[int, str]) -> Run:
        label = "A" if task == "A-sqlite" else task
        run = Run(rep + 1, task, tool.backend, tool.name, tool.kind)
        self.checkpoint()
        slug = f"r{rep + 1}_{task}_{tool.backend}_{tool.name}".replace(" ", "_").replace("/", "_")
        res = measure(tool.command(label), self.args.timeout, self.work / "logs" / f"{slug}.log")
        run.wall_s, run.rss_mb, run.child = res["wall"], res["rss_mb"], res["child"]
        if res["timed_out"]:
            run.reason = f"TIMEOUT after {self.args.timeout:.0f} s"
        elif res["rc"] != 0:
            detail = res["child"].get("errors") or res["stderr"]
            run.reason = f"exit {res['rc']}: {str(detail)[:300]}"
        else:
            run.reason = self.verify(tool, expected)
        run.ok = not run.reason
        state = "ok" if run.ok else f"FAILED ({run.reason})"
        log(f"repeat {rep + 1} task {task:8} {tool.backend:8} {tool.name:24} "
            f"{run.wall_s:8.2f} s {run.rss_mb:7.0f} MB  {state}")
        self.runs.append(run)
        return run

    def repeat(self, rep: int) -> None:
        src = self.pg["src"]
        tools = self.pg_tools[rep % max(1, len(self.pg_tools)):] + \
            self.pg_tools[: rep % max(1, len(self.pg_tools))]
        broken: set[str] = set()

        def task(name: str, expected: tuple[int, str]) -> None:
            for tool in tools:
                if tool.name in broken:
                    self.runs.append(Run(rep + 1, name, tool.backend, tool.name, tool.kind,
                                         reason="skipped: an earlier task of this repeat failed"))
                    continue
                if name == "A":
                    tool.reset(self.pg)
                if not self.run_one(rep, name, tool, expected).ok:
                    broken.add(tool.name)

        if tools:
            if rep > 0:
                data.pg_restore(src)
                if data.pg_checksum(src, "contact", data.FILTER_SQL) != self.expected["base"]:
                    raise SystemExit("restoring the source failed")
            task("A", self.expected["base"])
            task("B", self.expected["base"])
            data.pg_apply_change(src)
            data.pg_vacuum(src)
            self.expected.setdefault("C", data.pg_checksum(src, "contact", data.FILTER_SQL))
            task("C", self.expected["C"])
            data.pg_apply_delete(src)
            data.pg_vacuum(src)
            self.expected.setdefault("D", data.pg_checksum(src, "contact", data.FILTER_SQL))
            task("D", self.expected["D"])
        for tool in self.sqlite_tools:
            tool.reset(self.pg)
            self.run_one(rep, "A-sqlite", tool, self.expected["sqlite"])

    # report
    def cells(self) -> list[dict[str, Any]]:
        out = []
        order = [(t, tool) for t in ("A", "B", "C", "D") for tool in self.pg_tools] + \
                [("A-sqlite", tool) for tool in self.sqlite_tools]
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
            else:
                first = next((r for r in runs if not r.ok), None)
                cell["failed"] = first.reason if first else "not run"
            out.append(cell)
        for task in TASKS:
            mine = [c for c in out if c["task"] == task and "median" in c]
            floor = [c["median"] for c in mine if c["kind"] == "floor"]
            dlt = [c["median"] for c in mine if c["kind"] == "dlt"]
            for c in mine:
                c["x_floor"] = c["median"] / min(floor) if floor else None
                c["x_dlt"] = c["median"] / min(dlt) if dlt else None
        return out

    def report(self, started: float) -> str:
        a = self.args
        cells = self.cells()
        lines = [
            f"# sync_assets benchmark, {a.rows:,} rows",
            "",
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {a.repeat} "
            f"repeat{'s' if a.repeat != 1 else ''}, interleaved; whole run "
            f"{(time.perf_counter() - started) / 60:.1f} min.",
            "",
            "| task | tool | median s | rows/s | peak RSS MB | x floor | x dlt best | "
            "in-process s | runs ok |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        for c in cells:
            if "median" in c:
                lines.append(
                    f"| {c['task']} | {c['tool']} | {c['median']:.2f} | {c['rows_s']:,.0f} | "
                    f"{c['rss']:.0f} | {fmt(c['x_floor'], '.1f')} | {fmt(c['x_dlt'], '.2f')} | "
                    f"{c['work']:.2f} | {c['ok']}/{c['runs']} |")
            else:
                lines.append(f"| {c['task']} | {c['tool']} | FAILED | | | | | | "
                             f"{c['ok']}/{c['runs']} |")
        failed = [c for c in cells if "failed" in c]
        if failed:
            lines += ["", "Failed cells (first failure):", ""]
            lines += [f"- {c['task']} / {c['tool']}: {c['failed']}" for c in failed]
        lines += [
            "",
            "Tasks: " + "; ".join(f"**{k}** {v}" for k, v in TASKS.items()) + ".",
            f"rows/s: rows the task is about divided by the median: A and B "
            f"{self.task_rows.get('A', 0):,} (every filtered row, written or checked), "
            f"C {self.task_rows.get('C', 0):,} (filtered rows changed), "
            f"D {self.task_rows.get('D', 0):,} (filtered rows deleted).",
            "median s: wall time of the whole process (interpreter start and imports "
            "included); in-process s: the tool's own time after its imports (engine, pandas, "
            "dlt; = wall for psql). x floor: median / fastest floor (INSERT..SELECT, COPY "
            "pipe) of the task; x dlt best: median / fastest dlt backend of the task. Peak "
            "RSS: the largest process of the run's process tree (the PostgreSQL server's "
            "memory is not counted).",
            "",
            "## Machine",
            "",
            *[f"- {k}: {v}" for k, v in self.machine().items()],
            "",
            "## Targets (1,000,000 rows, measured earlier on these machines)",
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
         "task_rows": bench.task_rows, "runs": [asdict(r) for r in bench.runs]}, indent=1))
    for scratch in bench.work.glob("*.db*"):  # the SQLite files: ~1 GB at 1M rows
        scratch.unlink()
    print(report)
    log(f"written to {out} (and {out.with_suffix('.json').name})")


if __name__ == "__main__":
    main()
