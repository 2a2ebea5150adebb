"""A plain pandas sync, as a data engineer would write it in an afternoon.

    python pandas_sync.py SRC_URL DST_URL SCHEMA upsert|mirror

upsert (tasks A, B, C): the cursor is the destination's max(updated_at); read the filtered
source rows at or after it with `pd.read_sql`, `to_sql` them into a staging table, then one
INSERT ... ON CONFLICT (email) DO UPDATE that skips unchanged rows.
mirror (task D): read every filtered source row, stage, upsert, and delete the destination
rows missing from the stage.
"""

import json
import sys
import time

t0 = time.perf_counter()
import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402

t1 = time.perf_counter()
src_url, dst_url, schema, mode = sys.argv[1:5]
COLS = "id, email, first_name, last_name, updated_at"
src = sa.create_engine(src_url)
dst = sa.create_engine(dst_url)
table = f"{schema}.contacts"

cursor = None
if mode == "upsert":
    with dst.connect() as conn:
        cursor = conn.execute(sa.text(f"SELECT max(updated_at) FROM {table}")).scalar()
query = f"SELECT {COLS} FROM contact WHERE status = 'active'"
params = {}
if cursor is not None:
    query += " AND updated_at >= :cursor"
    params = {"cursor": cursor}
with src.connect() as conn:
    df = pd.read_sql(sa.text(query), conn, params=params)
written = deleted = 0
with dst.begin() as conn:
    if len(df) or mode == "mirror":
        df.to_sql("_stage", conn, schema=schema, if_exists="replace", index=False,
                  chunksize=10_000)
        written = conn.execute(sa.text(f"""
            INSERT INTO {table} ({COLS}) SELECT {COLS} FROM {schema}._stage
            ON CONFLICT (email) DO UPDATE SET id = EXCLUDED.id,
                first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
                updated_at = EXCLUDED.updated_at
            WHERE (contacts.id, contacts.first_name, contacts.last_name, contacts.updated_at)
                IS DISTINCT FROM (EXCLUDED.id, EXCLUDED.first_name, EXCLUDED.last_name,
                                  EXCLUDED.updated_at)""")).rowcount
        if mode == "mirror":
            deleted = conn.execute(sa.text(f"""
                DELETE FROM {table} d WHERE NOT EXISTS
                    (SELECT 1 FROM {schema}._stage s WHERE s.email = d.email)""")).rowcount
        conn.execute(sa.text(f"DROP TABLE {schema}._stage"))
t2 = time.perf_counter()
print(json.dumps({"ok": True, "read": len(df), "written": written, "deleted": deleted,
                  "import_s": round(t1 - t0, 3), "work_s": round(t2 - t1, 3)}))
