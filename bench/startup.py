"""Start-up: `sync-assets --help`, and a project of many syncs loaded as Dagster loads it.

    bench/startup                  # 1,000 syncs, 5 repeats
    bench/startup --syncs 200 --repeat 3

Each measurement is a fresh process, timed from outside (wall and peak RSS, as bench/run
does), the measurements interleaved. Beside them, in the same run, the baselines they stand
on: an interpreter that does nothing, and one that imports Dagster. The project is written
fresh: every sync reads its own object with a filter, maps three fields, upserts by a key
and runs on a cron schedule; every tenth is a `syncMode: full` sync. The load is checked
(one sync asset, one source, one job, one schedule per sync) before its time counts.

The issue's targets (#15): `sync-assets --help` in under 0.3 s; 1,000 syncs loaded and
validated (`load_project`, `build_definitions`, `Definitions.validate_loadable`) in under
4 s. Writes bench/results/<timestamp>-startup.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import measure  # noqa: E402

HELP_LIMIT_S = 0.3
LOAD_LIMIT_S = 4.0
NOTHING = "python -c pass (baseline)"
DAGSTER = "python -c 'import dagster' (baseline)"


def write_project(directory: Path, syncs: int) -> None:
    lines = ["objectstack: {url: 'sqlite:///objectstack.db'}", "syncs:"]
    for i in range(syncs):
        mode = "full" if i % 10 == 9 else "incremental"
        cursor = "" if mode == "full" else ", changeTrackingField: updated_at"
        lines.append(
            f"  - {{name: s{i}, source: {{object: t{i}, filters: {{status: active}}}}, "
            f"destination: {{object: c{i}, operation: upsert, matchKey: [id], "
            f"mapping: {{id: id, name: full_name, amount: amount}}}}, syncMode: {mode}"
            f"{cursor}, schedule: '{i % 60} * * * *'}}")
    (directory / "sync_assets.yaml").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--syncs", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", help="Markdown file (default bench/results/<timestamp>-startup.md)")
    args = p.parse_args()
    python = str(ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="sync_assets_startup_") as tmp:
        work = Path(tmp)
        write_project(work, args.syncs)
        commands = {
            NOTHING: [python, "-c", "pass"],
            "sync-assets --help": [str(ROOT / ".venv" / "bin" / "sync-assets"), "--help"],
            DAGSTER: [python, "-c", "import dagster"],
            f"load {args.syncs:,} syncs": [python, str(HERE / "tools" / "load_syncs.py"),
                                           str(work), str(args.syncs)],
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
        for rep in range(args.repeat):
            for name, cmd in commands.items():
                got = measure(cmd, 600, work / f"run-{rep}-{len(runs[name])}.log")
                got["ok"] = got["rc"] == 0 and not got["timed_out"]
                runs[name].append(got)
                print(f"[{rep + 1}/{args.repeat}] {name}: {got['wall']:.2f} s"
                      + ("" if got["ok"] else f" FAILED: {got['stderr']}"), flush=True)

    def median(name: str, what: str = "wall") -> float:
        good = [r for r in runs[name] if r["ok"]]
        if len(good) != len(runs[name]):
            raise SystemExit(f"{name}: {len(runs[name]) - len(good)} runs failed")
        return statistics.median(r[what] if what in ("wall", "rss_mb") else r["child"][what]
                                 for r in good)

    load = f"load {args.syncs:,} syncs"
    rows = ["| process | median wall s | peak RSS MB |", "|---|--:|--:|"]
    rows += [f"| {name} | {median(name):.3f} | {median(name, 'rss_mb'):.0f} |"
             for name in commands]
    phases = {k: median(load, k) for k in ("import_s", "load_s", "build_s", "validate_s",
                                           "work_s")}
    help_s, work_s = median("sync-assets --help"), phases["work_s"]
    scaled = work_s * 1000 / args.syncs
    targets = [
        ("`sync-assets --help` under 0.3 s", f"{help_s:.3f} s", help_s < HELP_LIMIT_S,
         f"{help_s / median(NOTHING):.1f}x an interpreter doing nothing"),
        ("1,000 syncs loaded and validated (load + build + validate) under 4 s",
         f"{work_s:.2f} s" + ("" if args.syncs == 1000 else f" ({scaled:.2f} s per 1,000)"),
         scaled < LOAD_LIMIT_S,
         f"whole process {median(load):.2f} s, of which importing {phases['import_s']:.2f} s "
         f"(a process importing Dagster alone: {median(DAGSTER):.2f} s)"),
    ]
    report = [
        f"# sync_assets start-up, {args.syncs:,} syncs",
        "",
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {args.repeat} repeats, "
        "interleaved, medians; every run a fresh process.",
        "",
        *rows,
        "",
        f"Loading {args.syncs:,} syncs, in the process (medians): importing "
        f"{phases['import_s']:.2f} s, `load_project` {phases['load_s']:.2f} s, "
        f"`build_definitions` {phases['build_s']:.2f} s, `validate_loadable` "
        f"{phases['validate_s']:.2f} s; after the imports {work_s:.2f} s. Every load held "
        f"{args.syncs:,} syncs, {2 * args.syncs:,} assets, {args.syncs:,} jobs and schedules.",
        "",
        "## Targets (issue #15)",
        "",
        "| target | measured | status | detail |",
        "|---|--:|---|---|",
        *[f"| {t} | {m} | {'met' if ok else 'NOT MET'} | {d} |" for t, m, ok, d in targets],
        "",
    ]
    text = "\n".join(report)
    print("\n" + text)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else HERE / "results" / f"{stamp}-startup.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "runs": runs, "phases": phases}, indent=1, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
