"""One run of dlt (sql_database source -> postgres destination) in a fresh process.

    python dlt_sync.py BACKEND SRC_URL DST_URL DATASET PIPELINES_DIR merge|replace [FORMAT]
        [--table contact --dest-table contacts --columns id,email,... --key email
         --where "status = 'active'"]

merge (tasks A, B, C): `sql_table` with the given backend (connectorx, pyarrow, sqlalchemy),
only the five mapped columns, the filter status = 'active' (query adapter), incremental on
updated_at, write disposition merge with primary key email (dlt's default merge strategy,
delete-insert through a staging dataset).
replace (task D, the mirror): dlt cannot see deleted rows through an incremental cursor; its
way to mirror a table without CDC is a full extract with write disposition replace.

FORMAT is dlt's loader file format (default: dlt's own choice, insert_values on postgres).
The options name another table (the wide task: --table account --key id ...); the defaults
are the contact sync's. --text-columns: columns read as text (cast in the SELECT, typed text
by `type_adapter_callback`, dlt's documented way around a type it cannot load): none of dlt's
backends loads a PostgreSQL interval (connectorx panics "not implemented: interval", pyarrow
refuses `duration[us]`, sqlalchemy fails "Type is not JSON serializable:
datetime.timedelta").
"""

import argparse
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
p = argparse.ArgumentParser()
for name in ("backend", "src_url", "dst_url", "dataset", "pipelines_dir", "mode"):
    p.add_argument(name)
p.add_argument("file_format", nargs="?", default="default")
p.add_argument("--table", default="contact")
p.add_argument("--dest-table", default="contacts")
p.add_argument("--columns", default="id,email,first_name,last_name,updated_at")
p.add_argument("--key", default="email")
p.add_argument("--where", default="status = 'active'")
p.add_argument("--text-columns", default="")
a = p.parse_args()
text_columns = {c for c in a.text_columns.split(",") if c}
backend, src_url, dst_url, dataset, pipelines_dir, mode = (
    a.backend, a.src_url, a.dst_url, a.dataset, a.pipelines_dir, a.mode)
file_format = None if a.file_format == "default" else a.file_format


def only_filtered(query, table):
    if text_columns:
        query = query.with_only_columns(*[
            sa.cast(c, sa.Text).label(c.name) if c.name in text_columns else c
            for c in query.selected_columns])
    return query.where(sa.text(a.where))


def as_text(sql_type):
    from sqlalchemy.dialects.postgresql import INTERVAL

    return sa.Text() if text_columns and isinstance(sql_type, INTERVAL) else sql_type


resource = sql_table(
    credentials=src_url,
    table=a.table,
    backend=backend,
    included_columns=a.columns.split(","),
    query_adapter_callback=only_filtered,
    type_adapter_callback=as_text,
    incremental=dlt.sources.incremental("updated_at") if mode == "merge" else None,
    reflection_level="full",
)
resource.apply_hints(
    table_name=a.dest_table,
    write_disposition="merge" if mode == "merge" else "replace",
    primary_key=a.key.split(",") if "," in a.key else a.key,
)
# dlt's postgres destination insists on a password; the benchmark cluster trusts local
# connections, so any will do.
dst = sa.make_url(dst_url)
if dst.password is None:
    dst = dst.set(password="bench")
dst = dst.set(drivername="postgresql")
pipeline = dlt.pipeline(
    pipeline_name=f"bench_{backend}_{a.table}",
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
    rows = trace.last_normalize_info.row_counts.get(a.dest_table, 0)
except Exception:  # an empty incremental run has no normalize info on some versions
    rows = 0
print(json.dumps({
    "ok": not info.has_failed_jobs,
    "rows": rows,
    "import_s": round(t1 - t0, 3),
    "work_s": round(t2 - t1, 3),
}))
sys.exit(1 if info.has_failed_jobs else 0)
