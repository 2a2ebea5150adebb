"""The `sync-assets` command: validate, schema, plan and run a project's syncs.

Exit codes: 0 all good, 1 a run ended partial or failed, 2 a config or usage error. Expected
failures print one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import TextIO

from .project import Project, load_project
from .spec import SyncConfigError

EXIT_OK, EXIT_RUN_FAILED, EXIT_CONFIG = 0, 1, 2


def _schedule_text(project: Project, name: str) -> str:
    schedule = project.syncs[name].config.schedule
    return schedule.source or "(ast)" if schedule is not None else "-"


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    project = load_project(args.paths)
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
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    name = {"config": "DataSyncConfig.json", "result": "SyncExecutionResult.json"}[args.which]
    text = resources.files("sync_assets.spec").joinpath("schemas", name).read_text("utf-8")
    out.write(json.dumps(json.loads(text), indent=2) + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sync-assets",
        description="Run ObjectStack Data Sync Protocol (Level 1) syncs, alone or in Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate", help="check project files and list their syncs")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a project file or folder")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("schema", help="print the JSON Schema of a sync config")
    p.add_argument(
        "which", nargs="?", default="config", choices=("config", "result"),
        help="config (DataSyncConfig, the default) or result (SyncExecutionResult)",
    )
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return EXIT_CONFIG if exc.code else EXIT_OK
    try:
        return int(args.func(args, out))
    except SyncConfigError as exc:
        n = len(exc.problems)
        sys.stderr.write(f"{exc}\n{n} problem{'s' if n != 1 else ''} found\n")
        return EXIT_CONFIG
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
