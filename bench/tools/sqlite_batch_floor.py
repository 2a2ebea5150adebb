"""What SQLite itself takes to write A-sqlite's rows the way a sync must: raw sqlite3, no engine.

    python sqlite_batch_floor.py SOURCE.db OUT.db [--batch N] [--no-state] [--one-transaction]

Reads the active contacts of the bench's SQLite source (bench/data.py) in the incremental
order, then writes them to a fresh OUT.db with the engine's writer settings (WAL,
synchronous=NORMAL, 32 MiB cache, 256 MiB checkpoints): each batch's rows into `contacts`
(keyed by email) and a state row per record into a table shaped as `_sync_assets_records`
(WITHOUT ROWID, keyed by sync and record key), one transaction per batch. `--no-state` leaves
the state table out; `--one-transaction` commits once. Prints one JSON line: seconds
writing and committing. The gap between these and the ATTACH floor is what per-batch
commits and the state's second B-tree of random keys cost, apart from any Python of ours.
"""

import argparse
import hashlib
import json
import os
import sqlite3
import time

p = argparse.ArgumentParser()
p.add_argument("source")
p.add_argument("out")
p.add_argument("--batch", type=int, default=10_000)
p.add_argument("--no-state", action="store_true")
p.add_argument("--one-transaction", action="store_true")
args = p.parse_args()

rows = sqlite3.connect(args.source).execute(
    "SELECT id, email, first_name, last_name, updated_at FROM contact "
    "WHERE status = 'active' ORDER BY updated_at, id").fetchall()
for suffix in ("", "-wal", "-shm"):
    if os.path.exists(args.out + suffix):
        os.unlink(args.out + suffix)
con = sqlite3.connect(args.out, isolation_level=None)
for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-32768",
               "wal_autocheckpoint=65536"):
    con.execute(f"PRAGMA {pragma}")
con.execute("CREATE TABLE contacts (id INTEGER, email TEXT, first_name TEXT, last_name TEXT, "
            "updated_at DATETIME, PRIMARY KEY (email))")
con.execute("CREATE TABLE records (sync_name VARCHAR(255) NOT NULL, record_key TEXT NOT NULL, "
            "fingerprint VARCHAR(32) NOT NULL, created BOOLEAN NOT NULL, "
            "PRIMARY KEY (sync_name, record_key)) WITHOUT ROWID")
state = [("bench_contacts", json.dumps([r[1]]),
          hashlib.blake2b(repr(r).encode(), digest_size=16).hexdigest(), 1) for r in rows]

started, committing = time.perf_counter(), 0.0
step = len(rows) if args.one_transaction else args.batch
for i in range(0, len(rows), step):
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?, ?)", rows[i:i + step])
    if not args.no_state:
        con.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", state[i:i + step])
    t = time.perf_counter()
    con.execute("COMMIT")
    committing += time.perf_counter() - t
print(json.dumps({"rows": len(rows), "batch": step, "state": not args.no_state,
                  "write_s": round(time.perf_counter() - started, 2),
                  "commit_s": round(committing, 2)}))
