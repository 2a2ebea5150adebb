"""One run of dlt (sql_database source -> postgres destination) in a fresh process.

    python dlt_sync.py BACKEND SRC_URL DST_URL DATASET PIPELINES_DIR merge|replace [FORMAT]

merge (tasks A, B, C): `sql_table` with the given backend (connectorx, pyarrow, sqlalchemy),
only the five mapped columns, the filter status = 'active' (query adapter), incremental on
updated_at, write disposition merge with primary key email (dlt's default merge strategy,
delete-insert through a staging dataset).
replace (task D, the mirror): dlt cannot see deleted rows through an incremental cursor; its
way to mirror a table without CDC is a full extract with write disposition replace.

FORMAT is dlt's loader file format (default: dlt's own choice, insert_values on postgres).
"""

import json
import os
import sys
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
t0 = time.perf_counter()
import dlt  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from dlt.sources.sql_database import sql_table  # noqa: E402

t1 = time.perf_counter()
backend, src_url, dst_url, dataset, pipelines_dir, mode = sys.argv[1:7]
file_format = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] != "default" else None


def only_active(query, table):
    return query.where(sa.text("status = 'active'"))


resource = sql_table(
    credentials=src_url,
    table="contact",
    backend=backend,
    included_columns=["id", "email", "first_name", "last_name", "updated_at"],
    query_adapter_callback=only_active,
    incremental=dlt.sources.incremental("updated_at") if mode == "merge" else None,
    reflection_level="full",
)
resource.apply_hints(
    table_name="contacts",
    write_disposition="merge" if mode == "merge" else "replace",
    primary_key="email",
)
# dlt's postgres destination insists on a password; the benchmark cluster trusts local
# connections, so any will do.
dst = sa.make_url(dst_url)
if dst.password is None:
    dst = dst.set(password="bench")
dst = dst.set(drivername="postgresql")
pipeline = dlt.pipeline(
    pipeline_name=f"bench_{backend}",
    destination=dlt.destinations.postgres(credentials=dst.render_as_string(hide_password=False)),
    dataset_name=dataset,
    pipelines_dir=pipelines_dir,
    progress=None,
)
info = pipeline.run(resource, loader_file_format=file_format)
t2 = time.perf_counter()
trace = pipeline.last_trace
rows = None
try:
    rows = trace.last_normalize_info.row_counts.get("contacts", 0)
except Exception:  # an empty incremental run has no normalize info on some versions
    rows = 0
print(json.dumps({
    "ok": not info.has_failed_jobs,
    "rows": rows,
    "import_s": round(t1 - t0, 3),
    "work_s": round(t2 - t1, 3),
}))
sys.exit(1 if info.has_failed_jobs else 0)
