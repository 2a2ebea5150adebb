"""The `sync-assets` command: validate, schema, plan and run a project's syncs.

Exit codes: 0 all good, 1 a run ended partial or failed, 2 a config or usage error. Expected
failures print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # loaded by the commands that need them: `--help` imports none of this
    from .project import Project
    from .spec.errors import Problem

EXIT_OK, EXIT_RUN_FAILED, EXIT_CONFIG = 0, 1, 2


def _schedule_text(project: Project, name: str) -> str:
    schedule = project.syncs[name].config.schedule
    return schedule.source or "(ast)" if schedule is not None else "-"


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "path": problem.path,
            "message": problem.message}


#: characters json.dumps leaves as they are that a terminal may act on: written as \u escapes
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029)}


def _write_json(out: TextIO, data: Any) -> None:
    text = json.dumps(data, ensure_ascii=False, default=str)
    out.write(text.translate(_JSON_ESCAPES) + "\n")


def _problems_text(problems: Sequence[Problem]) -> str:
    n = len(problems)
    return "".join(f"{p}\n" for p in problems) + f"{n} problem{'s' if n != 1 else ''} found\n"


def _sync_json(project: Project, name: str) -> dict[str, Any]:
    from .project.yaml_lines import line_of

    sync = project.syncs[name]
    c = sync.config
    schedule = c.schedule.source if c.schedule is not None else None
    return {"name": name, "file": sync.shown or str(sync.file),
            "line": line_of(sync.lines, sync.prefix), "direction": c.direction,
            "syncMode": c.syncMode, "operation": c.destination.operation,
            "schedule": schedule, "enabled": c.enabled}


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from .project import load_project
    from .spec import SyncConfigError

    try:
        project = load_project(args.paths)
    except SyncConfigError as exc:
        if not args.json:
            raise
        _write_json(out, {"ok": False, "problems": [_problem_json(p) for p in exc.problems],
                          "syncs": [], "notices": [], "errors": []})
        return EXIT_CONFIG
    notices = list(project.notices)
    problems: list[Problem] = []
    errors: list[Problem] = []
    described = 0
    if args.connect:
        from .project.live import check_live

        live = check_live(project)
        problems, errors, described = live.problems, live.unreachable, live.described
        notices += live.notices
    code = EXIT_CONFIG if problems else EXIT_RUN_FAILED if errors else EXIT_OK
    if args.json:
        _write_json(out, {
            "ok": code == EXIT_OK, "problems": [_problem_json(p) for p in problems],
            "syncs": [_sync_json(project, n) for n in sorted(project.syncs)],
            "notices": [_problem_json(p) for p in notices],
            "errors": [_problem_json(p) for p in errors],
        })
        return code
    if code != EXIT_OK:
        for error in errors:
            sys.stderr.write(f"error: {error}\n")
        if problems:
            sys.stderr.write(_problems_text(problems))
        return code
    rows = [("SYNC", "DIRECTION", "MODE", "OPERATION", "SCHEDULE")]
    for name, sync in sorted(project.syncs.items()):
        c = sync.config
        rows.append(
            (name, c.direction, c.syncMode, c.destination.operation, _schedule_text(project, name))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    n = len(project.syncs)
    out.write(f"{n} sync{'s' if n != 1 else ''} valid\n")
    if args.connect:
        out.write(f"fields checked against {described} live record "
                  f"set{'s' if described != 1 else ''}\n")
    for notice in notices:
        out.write(f"notice: {notice}\n")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    name = {"config": "DataSyncConfig.json", "result": "SyncExecutionResult.json"}[args.which]
    text = resources.files("sync_assets.spec").joinpath("schemas", name).read_text("utf-8")
    out.write(json.dumps(json.loads(text), indent=2) + "\n")
    return EXIT_OK


_STAT_LABELS = (
    ("recordsInserted", "inserted"), ("recordsUpdated", "updated"),
    ("recordsDeleted", "deleted"), ("recordsSkipped", "skipped"),
    ("recordsErrored", "errored"),
)


def _stats_line(stats: dict[str, int]) -> str:
    parts = [f"{stats.get(k, 0)} {label}" for k, label in _STAT_LABELS]
    return f"{stats.get('recordsProcessed', 0)} processed: " + ", ".join(parts)


def _plan_line(stats: dict[str, int]) -> str:
    parts = [f"{stats.get(k, 0)} {label}" for k, label in _STAT_LABELS]
    n = stats.get("recordsProcessed", 0)
    return f"{n} record{'' if n == 1 else 's'}: " + ", ".join(parts)


def skip_pandas_probe() -> None:
    """Answer pyarrow's one look for pandas with "absent" in a process that has not
    imported it: pyarrow imports pandas (0.2 s, 30 MB) the first time it converts a Python
    value, only to ask whether the value is a pandas object, which a run never hands it.
    An explicit pandas use later (`Table.from_pandas`) still imports it: pyarrow tries
    again where it is asked for pandas itself."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.scalar(0)
    finally:
        sys.meta_path.remove(blocker)


class _NoPandas:
    """An import finder that refuses pandas (for `skip_pandas_probe`)."""

    def find_spec(self, name: str, *_args: Any) -> None:
        if name == "pandas":
            raise ImportError("pandas is not looked for here")


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    skip_pandas_probe()
    from .engine import plan
    from .project import load_project
    from .spec import SyncConfigError

    try:
        project = load_project(args.project)
        project.sync(args.sync)
    except SyncConfigError as exc:
        if not args.json:
            raise
        _write_json(out, {"ok": False, "problems": [_problem_json(p) for p in exc.problems]})
        return EXIT_CONFIG
    # A plan does not wait between retries: its writes are rolled back, a refused batch is
    # refused again at once, and waiting `retry.backoffMs` (30 s by default) per attempt would
    # only delay the answer.
    the_plan = plan(project, args.sync, full_refresh=args.full_refresh, sleep=_no_wait)
    spec = the_plan.result.to_spec()
    code = EXIT_OK if spec["status"] == "completed" else EXIT_RUN_FAILED
    samples = {action: the_plan.samples.get(action, []) for action in ("insert", "update",
                                                                        "delete")}
    if args.json:
        _write_json(out, {"ok": code == EXIT_OK, "sync": args.sync, "status": spec["status"],
                          "stats": spec.get("stats", {}), "samples": samples,
                          "errors": spec.get("errors", [])})
        return code
    out.write(f"plan for {args.sync} (nothing written)\n")
    out.write(f"  would process {_plan_line(spec.get('stats', {}))}\n")
    for action, records in samples.items():
        for record in records:
            shown = json.dumps(record, default=str, ensure_ascii=False)
            out.write(f"  {action:<6} {shown}\n")
    for error in spec.get("errors", []):
        out.write(f"  error  {_error_line(error)}\n")
    return code


def _no_wait(_seconds: float) -> None:
    return None


def _error_line(error: dict[str, str]) -> str:
    where = " ".join(
        f"{label} {error[key]}" for key, label in (("recordId", "record"), ("field", "field"))
        if key in error
    )
    code = f"[{error['code']}] " if "code" in error else ""
    return f"{code}{where + ': ' if where else ''}{error['message']}"


class _ProgressLine:
    """A one-line progress display on a terminal's stderr."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active = stream.isatty()

    def __call__(self, progress: object) -> None:
        if not self.active:
            return
        r = progress.result  # type: ignore[attr-defined]
        self.stream.write(
            f"\r  {progress.sync_name}: {progress.read} read, {r.inserted} inserted, "  # type: ignore[attr-defined]
            f"{r.updated} updated, {r.skipped} skipped, {r.errored} errored\x1b[K"
        )
        self.stream.flush()

    def done(self) -> None:
        if self.active:
            self.stream.write("\r\x1b[K")


class _Stop:
    """SIGINT and SIGTERM ask the run to stop at its next batch boundary (a second one
    stops at once); the exit code then says which signal it was (130, 143)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        self._before: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, sig: int, _frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal = sig
        self.event.set()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    skip_pandas_probe()
    from .engine import run
    from .project import load_project

    project = load_project(args.project)
    names = args.sync or sorted(project.syncs)
    for name in names:
        project.sync(name)  # every name checked before anything runs
    worst = EXIT_OK
    with _Stop() as stop:
        for name in names:
            if stop.event.is_set():
                break
            worst = max(worst, _run_one(project, name, args, out, run, stop))
    return stop.exit_code if stop.event.is_set() else worst


def _run_one(project: Any, name: str, args: argparse.Namespace, out: TextIO, run: Any,
             stop: _Stop) -> int:
    """One sync of `run`: its summary (or its JSON result) on `out`, and its exit code."""
    bar = _ProgressLine(sys.stderr)
    result = run(
        project, name, full_refresh=args.full_refresh,
        allow_mass_delete=args.allow_mass_delete, progress=None if args.json else bar,
        cancel=stop.event, lock_timeout=args.wait,
    )
    bar.done()
    spec = result.to_spec()
    code = EXIT_OK if spec["status"] == "completed" else EXIT_RUN_FAILED
    if args.json:
        out.write(json.dumps(spec, ensure_ascii=False) + "\n")
        return code
    seconds = spec.get("durationMs", 0) / 1000
    out.write(f"{name}: {spec['status']} in {seconds:.1f}s, {_stats_line(spec['stats'])}\n")
    if spec["status"] == "cancelled":
        out.write("  stopped at a batch boundary; the next run resumes here\n")
    errors = spec.get("errors", [])
    for error in errors[: args.show_errors]:
        out.write(f"  {_error_line(error)}\n")
    if len(errors) > args.show_errors:
        out.write(f"  ... and {len(errors) - args.show_errors} more errors (see --json)\n")
    return code


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sync-assets")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sync-assets",
        description="Run ObjectStack Data Sync Protocol (Level 1) syncs, alone or in Dagster.",
    )
    parser.add_argument("--version", action="version",
                        version=f"sync-assets {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate", help="check project files and list their syncs")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a project file or folder")
    p.add_argument("--connect", action="store_true",
                   help="also check field names against the live systems (reads their "
                        "schemas, writes nothing)")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on stdout")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("schema", help="print the JSON Schema of a sync config")
    p.add_argument(
        "which", nargs="?", default="config", choices=("config", "result"),
        help="config (DataSyncConfig, the default) or result (SyncExecutionResult)",
    )
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("plan", help="show what a run would do, writing nothing")
    p.add_argument("project", nargs="+", metavar="PROJECT", help="a project file or folder")
    p.add_argument("--sync", required=True, help="the sync to plan")
    p.add_argument("--full-refresh", action="store_true", help="plan a full refresh")
    p.add_argument("--json", action="store_true",
                   help="print the plan as one JSON object on stdout")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("run", help="run syncs and report their results")
    p.add_argument("project", nargs="+", metavar="PROJECT", help="a project file or folder")
    p.add_argument("--sync", action="append", help="a sync to run (repeatable; default all)")
    p.add_argument("--full-refresh", action="store_true",
                   help="ignore the cursor: read every record again and compare it with the "
                        "destination (records that differ are rewritten, the rest skipped)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="let a mirror (operation sync) delete more than half of what it created")
    p.add_argument("--json", action="store_true",
                   help="print one SyncExecutionResult per line (JSON) on stdout")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for another run of a sync to end (default 30)")
    p.add_argument("--show-errors", type=int, default=10, metavar="N",
                   help="record errors shown per sync in the summary (default 10)")
    p.set_defaults(func=cmd_run)
    from .cli_state import add_parsers

    add_parsers(sub)  # state show | reset, changes
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return EXIT_CONFIG if exc.code else EXIT_OK
    from .connectors.base import ConnectorError
    from .spec import SyncConfigError

    try:
        return int(args.func(args, out))
    except ConnectorError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_RUN_FAILED
    except SyncConfigError as exc:
        sys.stderr.write(_problems_text(exc.problems))
        return EXIT_CONFIG
    except KeyboardInterrupt:
        sys.stderr.write("interrupted at once (a second signal): what was committed before "
                         "stays, and the next run resumes there\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
