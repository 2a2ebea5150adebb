"""One run of our engine (sync_assets) in a fresh process: what `sync-assets run` does.

    python engine_sync.py PROJECT.yaml SYNC_NAME [--full-refresh]

--full-refresh: RunOptions(full_refresh=True), what `sync-assets run --full-refresh` does
(the cursor and the stored fingerprints ignored, every record compared with the
destination).

Prints one JSON line: status, stats, the first errors, and the time spent importing and
running (the harness measures the whole process's wall time and peak RSS from outside).
"""

import json
import sys
import time

t0 = time.perf_counter()
from sync_assets import load_project  # noqa: E402
from sync_assets.cli import skip_pandas_probe  # noqa: E402
from sync_assets.engine import run  # noqa: E402

skip_pandas_probe()  # as `sync-assets run` does

t1 = time.perf_counter()
args = [a for a in sys.argv[1:] if a != "--full-refresh"]
project_path, sync_name = args[0], args[1]
full_refresh = "--full-refresh" in sys.argv[1:]
result = run(load_project(project_path), sync_name, full_refresh=full_refresh).to_spec()
t2 = time.perf_counter()
print(json.dumps({
    "ok": result["status"] == "completed",
    "status": result["status"],
    "full_refresh": full_refresh,
    "stats": result.get("stats"),
    "errors": (result.get("errors") or [])[:3],
    "import_s": round(t1 - t0, 3),
    "work_s": round(t2 - t1, 3),
}, default=str))
sys.exit(0 if result["status"] == "completed" else 1)
