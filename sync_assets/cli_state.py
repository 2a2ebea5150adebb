"""The `sync-assets state show | reset` and `sync-assets changes` commands: a sync's state
and change log, read (or forgotten) from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


def load_project(paths: Any) -> Any:  # loaded when a command runs: `--help` stays light
    from .project import load_project as load

    return load(paths)


def shown_cursor(value: Any) -> Any:
    from .spec.values import shown_cursor as shown

    return shown(value)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: Any) -> None:
    state = sub.add_parser("state", help="show or reset a sync's state")
    actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("show", help="cursor, records synced, records waiting for retry")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.set_defaults(func=cmd_state_show)
    p = actions.add_parser("reset", help="forget the cursor, the records synced and the "
                                         "failed records: the next run reads everything")
    _common(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_state_reset)
    p = sub.add_parser("changes", help="the change log of a sync (audit.trackChanges)")
    _common(p)
    p.add_argument("--since", type=_instant, metavar="TIME",
                   help="entries from this time on (ISO 8601; UTC unless it names a zone)")
    p.add_argument("--key", help="the entries of one record key (its match-key value)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="the newest N entries (default 100; 0 for all)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=cmd_changes)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("project", nargs="+", metavar="PROJECT", help="a project file or folder")
    p.add_argument("--sync", required=True, help="the sync")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-12-01T08:00:00Z)") from None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_state_show(args: argparse.Namespace, out: TextIO) -> int:
    from .engine.inspect import sync_state

    state = sync_state(load_project(args.project), args.sync)
    if args.json:
        out.write(json.dumps({
            "syncName": state.sync_name, "stateDatabase": state.where,
            "cursor": shown_cursor(state.cursor), "cursorMovedAt": _when(state.cursor_moved_at),
            "records": state.records, "openConflicts": state.open_conflicts,
            "failedRecords": [{
                "recordId": f.record_id, "code": f.code, "message": f.message,
                "attempts": f.attempts, "firstFailedAt": _when(f.first_failed_at),
                "lastFailedAt": _when(f.last_failed_at)} for f in state.failed],
        }, ensure_ascii=False) + "\n")
        return EXIT_OK
    out.write(f"sync {state.sync_name} (state in {state.where})\n")
    cursor = "none (the next run reads everything)" if state.cursor is None else (
        f"{shown_cursor(state.cursor)} (moved {_when(state.cursor_moved_at)})")
    out.write(f"  cursor          {cursor}\n")
    out.write(f"  records synced  {state.records}\n")
    if state.open_conflicts:
        out.write(f"  open conflicts  {state.open_conflicts}\n")
    out.write(f"  waiting retry   {len(state.failed)}\n")
    for f in state.failed:
        out.write(f"    record {f.record_id} [{f.code}] {f.attempts} attempts since "
                  f"{_when(f.first_failed_at)}: {f.message}\n")
    return EXIT_OK


def cmd_state_reset(args: argparse.Namespace, out: TextIO) -> int:
    from .engine.inspect import reset_state, sync_state

    project = load_project(args.project)
    state = sync_state(project, args.sync)
    if not args.yes:
        if not sys.stdin.isatty():
            sys.stderr.write("state reset needs --yes when not run from a terminal\n")
            return EXIT_USAGE
        answer = input(f"forget the cursor, {state.records} synced records and "
                       f"{len(state.failed)} failed records of {state.sync_name}? "
                       "The next run reads everything again. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.write("nothing changed\n")
            return EXIT_FAILED
    reset_state(project, args.sync)
    out.write(f"reset {state.sync_name}: forgot the cursor, {state.records} records and "
              f"{len(state.failed)} failed records; the change log is kept\n")
    return EXIT_OK


def cmd_changes(args: argparse.Namespace, out: TextIO) -> int:
    from .engine.inspect import change_log

    entries = change_log(load_project(args.project), args.sync, since=args.since,
                         key=args.key, limit=args.limit)
    for e in entries:
        if args.json:
            out.write(json.dumps({"runId": e["run_id"], "at": _when(e["at"]),
                                  "operation": e["operation"], "recordKey": e["record_key"],
                                  "before": e["before"], "after": e["after"]},
                                 default=str, ensure_ascii=False) + "\n")
            continue
        out.write(f"{_when(e['at'])} {e['operation']:<14} {e['record_key']}  "
                  f"{json.dumps(e['before'], default=str, ensure_ascii=False)} -> "
                  f"{json.dumps(e['after'], default=str, ensure_ascii=False)}\n")
    if not entries and not args.json:
        out.write("no changes recorded (audit.trackChanges keeps them)\n")
    return EXIT_OK
