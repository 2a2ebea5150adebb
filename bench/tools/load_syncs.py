"""Load a project of many syncs as a Dagster code location does, in a fresh process.

    python load_syncs.py PROJECT_DIR SYNCS

Reads the project (`load_project`), compiles it (`build_definitions`) and validates what
Dagster would load (`Definitions.validate_loadable`: every job resolved, every schedule and
sensor checked), then checks the result holds one sync asset, one source, one job and one
schedule per sync. Prints one JSON line: the time of each phase, the counts, and ok.
"""

import json
import sys
import time

t0 = time.perf_counter()
import dagster as dg  # noqa: E402

from sync_assets import build_definitions, load_project  # noqa: E402

t1 = time.perf_counter()
project_dir, syncs = sys.argv[1], int(sys.argv[2])
project = load_project(project_dir)
t2 = time.perf_counter()
defs = build_definitions(project)
t3 = time.perf_counter()
dg.Definitions.validate_loadable(defs)
t4 = time.perf_counter()

assets = len(defs.resolve_asset_graph().get_all_asset_keys())
jobs = len(list(defs.jobs or []))
schedules = len(list(defs.schedules or []))
ok = (len(project.syncs), assets, jobs, schedules) == (syncs, 2 * syncs, syncs, syncs)
print(json.dumps({
    "ok": ok, "syncs": len(project.syncs), "assets": assets, "jobs": jobs,
    "schedules": schedules, "import_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
    "build_s": round(t3 - t2, 3), "validate_s": round(t4 - t3, 3),
    "work_s": round(t4 - t1, 3),
}))
sys.exit(0 if ok else 1)
