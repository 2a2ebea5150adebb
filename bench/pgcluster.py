"""The benchmark's PostgreSQL cluster: tests/pg.py's throw-away cluster, tuned for bulk loads.

Settings (the same for every tool, reported in the results file): fsync off (-F, as the test
cluster), shared_buffers 512MB, max_wal_size 4GB and a 30 min checkpoint timeout (so a 1M-row
load is not dominated by checkpoints), timezone UTC.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pg  # tests/pg.py

SETTINGS = {
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "timezone": "UTC",
    "max_connections": "100",
}
pg_bin = pg.pg_bin


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster, yield a libpq URL of its `postgres` database, stop and remove it."""
    with pg.postgres_cluster(SETTINGS, database=None, scheme="postgresql") as url:
        yield url
