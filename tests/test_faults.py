"""Faults on both sides of a PostgreSQL -> PostgreSQL sync during a run (#13): the source's
and the destination's connections each killed five times, then each database restarted. The run
completes (reads are read again, batch writes retried under `retry`), and the destination
holds exactly the source, once; the next runs find nothing to write."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import Progress

from engine_helpers import counts, create_table, engine_for, project, rows, spec, sync, to_warehouse
from pg import postgres_cluster, restart

ROWS = 3000


@pytest.fixture(scope="module")
def two_clusters() -> Iterator[tuple[str, str]]:
    with postgres_cluster(database="source") as source, \
            postgres_cluster(database="warehouse") as warehouse:
        yield source, warehouse
    dispose_engines()


def kill_connections(url: str) -> int:
    database = url.rsplit("/", 1)[1]
    with engine_for(url) as admin, admin.connect() as conn:
        return len(conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db "
            "AND pid <> pg_backend_pid()"), {"db": database}).all())


@pytest.mark.parametrize("lane", ["arrow", "records"])
def test_killed_connections_and_restarts_on_both_sides_lose_and_double_nothing(
        tmp_path: Path, two_clusters: tuple[str, str], lane: str) -> None:
    source, warehouse = two_clusters
    table = f"person_{lane}"
    create_table(source, table, [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(100)), sa.Column("score", sa.Integer),
    ], [{"id": i, "email": f"p{i}@x.io", "score": i} for i in range(1, ROWS + 1)])
    extra = {} if lane == "arrow" else {"validation": {"required": ["email"]}}  # no lane
    proj = project(tmp_path, (source, warehouse), to_warehouse(
        f"people_{lane}", table, f"people_{lane}", batchSize=100, audit=None,
        retry={"maxAttempts": 5, "backoffMs": 200}, **extra))
    faults: dict[int, tuple[str, str]] = {}
    for n in range(5):  # each side's connections killed five times, then each restarted
        faults[2 + 2 * n] = ("kill", source)
        faults[3 + 2 * n] = ("kill", warehouse)
    faults[15] = ("restart", source)
    faults[20] = ("restart", warehouse)
    done: list[tuple[str, str]] = []
    hits = {"source": 0, "warehouse": 0}

    def fault(progress: Progress) -> None:
        batch = progress.read // 100
        if batch in faults:
            what, url = faults.pop(batch)
            side = "source" if url == source else "warehouse"
            if what == "kill":
                hits[side] += kill_connections(url) > 0  # a connection of the run died
            else:
                restart(url)
            done.append((what, side))

    first = sync(proj, f"people_{lane}", progress=fault, sleep=time.sleep)

    # most kills find a connection of the run open (between batches one may be idle)
    assert hits["source"] >= 3 and hits["warehouse"] >= 3, hits
    assert done == [("kill", "source"), ("kill", "warehouse")] * 5 + [
        ("restart", "source"), ("restart", "warehouse")]
    out = spec(first)
    assert (out["status"], out["errors"]) == ("completed", []), out
    assert counts(first) == {"processed": ROWS, "inserted": ROWS}
    final = sync(proj, f"people_{lane}")
    assert spec(final)["status"] == "completed", spec(final)
    assert rows(warehouse, f"people_{lane}", "id") == [
        (i, f"p{i}@x.io", i) for i in range(1, ROWS + 1)]
    assert counts(sync(proj, f"people_{lane}")) == {"processed": ROWS, "skipped": ROWS}
