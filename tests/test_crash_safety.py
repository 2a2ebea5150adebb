"""Crash safety: SIGKILL a large sync at random points, again and again, with the source changing
between kills; one final run must leave the destination holding exactly the expected records,
none lost, none twice.

Each case seeds a source of 16,000 records, then repeatedly starts
`tests/crash_worker.py` in its own process and kills it with SIGKILL somewhere inside the run.
Where: the worker reports every batch the engine committed (through the engine's public
`progress` option); the test picks a random batch count (over the batches this run will read)
and a random point inside the next batch, so kills spread over reading, mapping, writing and
committing, over table creation in the first batch, and (for `sync`) over the mirror phase after
the last one. Between kills the source changes: updates (including more tied change-tracking
values than a batch holds), new records and, for `sync`, a few deletions and a re-used email, so
later kills hit incremental resumption, not just a first load.

Destination tables are either created by the engine (with the match key as primary key, where a
doubled record would fail loudly) or created beforehand without any key or unique constraint
(where a doubled record would sit there silently): the row-by-row comparison catches both.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
import sqlalchemy as sa

from sync_assets import load_project
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.state import StateStore

from kill_helpers import LINE_TIMEOUT, Pace, kill_one_run

WORKER = Path(__file__).with_name("crash_worker.py")
SYNC = "crash_sync"
ROWS = 16_000
BATCH = 300
KILLS = 10  # per case; 12 cases
MAX_DELETES = 9  # per case, under the mirror's mass-delete guard (more than 10 at once)
BASE = datetime(2024, 1, 1, 8, 0, 0)

KILL_LOG: list[tuple[str, str, int]] = []  # (case id, where the kill landed, batches committed)


@pytest.fixture(scope="module", autouse=True)
def _kill_summary() -> Any:
    """Print, at the end of the module, where all the kills landed (shown with -s)."""
    yield
    landed = Counter(where for _, where, _ in KILL_LOG)
    print(f"\ncrash safety: {len(KILL_LOG)} kills in all: {dict(landed)}")


@dataclass(frozen=True)
class Case:
    operation: str  # insert | upsert | sync
    mode: str  # incremental | full
    table: str  # created: by the engine, match key as primary key
    #             precreated: before the first run, with no key or unique constraint at all
    #             append: insert without a match key, table created by the engine without a key
    parallel: bool = False  # optimization.parallelBatches (PostgreSQL: concurrent writers)

    @property
    def id(self) -> str:
        return f"{self.operation}-{self.mode}-{self.table}" + ("-parallel" if self.parallel else "")


CASES = [
    Case("insert", "incremental", "append"),
    Case("insert", "full", "precreated"),
    Case("upsert", "incremental", "precreated"),
    Case("upsert", "full", "created"),
    Case("sync", "incremental", "created"),
    Case("sync", "full", "precreated"),
    Case("upsert", "incremental", "precreated", parallel=True),
]

Version = tuple[int, str, datetime]  # (id, name, updated_at) of a source record


# -- the source, and what it ever held -------------------------------------------------------
@dataclass
class Source:
    url: str
    rng: Random
    rows: dict[int, tuple[str, str, datetime]] = field(default_factory=dict)
    #: every version each email ever had in the source (insert keeps the first one it wrote)
    versions: dict[str, set[Version]] = field(default_factory=dict)
    deleted_emails: list[str] = field(default_factory=list)
    deletes: int = 0

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.url)
        md = sa.MetaData()
        self.table = sa.Table(
            "contact", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("email", sa.String(120), nullable=False, unique=True),
            sa.Column("name", sa.String(120), nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
        )
        md.create_all(self.engine)
        self.next_id = 1

    def _put(self, conn: sa.Connection, rows: list[dict[str, Any]], *, new: bool) -> None:
        if not rows:
            return
        if new:
            conn.execute(sa.insert(self.table), rows)
        else:
            t = self.table
            conn.execute(
                sa.update(t).where(t.c.id == sa.bindparam("rid"))
                .values(name=sa.bindparam("name"), updated_at=sa.bindparam("updated_at")),
                [{"rid": r["id"], "name": r["name"], "updated_at": r["updated_at"]}
                 for r in rows],
            )
        for r in rows:
            self.rows[r["id"]] = (r["email"], r["name"], r["updated_at"])
            self.versions.setdefault(r["email"], set()).add(
                (r["id"], r["name"], r["updated_at"])
            )

    def _new_rows(self, count: int, at: datetime | None, email: str | None = None) -> list[dict]:
        out = []
        for _ in range(count):
            i = self.next_id
            self.next_id += 1
            out.append({
                "id": i, "email": email or f"user{i}@example.org", "name": f"Name {i}",
                # seven records per tracking value: batches of 300 end inside a tie
                "updated_at": at or BASE + timedelta(seconds=i // 7),
            })
        return out

    def seed(self, count: int) -> None:
        with self.engine.begin() as conn:
            self._put(conn, self._new_rows(count, None), new=True)

    def change(self, round_no: int, case: Case) -> None:
        """One round of source changes between two kills; every change gets a newer
        updated_at than anything before it, so an incremental run picks it up."""
        at = BASE + timedelta(days=1, minutes=round_no)
        with self.engine.begin() as conn:
            if case.table != "append":  # append mode would (rightly) append a new version
                ids = sorted(self.rows)
                # all share one updated_at: often more records than a batch holds
                picked = self.rng.sample(ids, self.rng.randint(50, 900))
                self._put(conn, [
                    {"id": i, "email": self.rows[i][0],
                     "name": f"Name {i} r{round_no}", "updated_at": at}
                    for i in sorted(picked)
                ], new=False)
            new = self._new_rows(self.rng.randint(10, 40), at)
            if case.operation == "sync" and round_no == 4 and self.deleted_emails:
                # a new record takes over the email of a record deleted earlier
                new += self._new_rows(1, at, email=self.deleted_emails[0])
            self._put(conn, new, new=True)
            if case.operation == "sync" and self.deletes < MAX_DELETES:
                # alternately an old record (surely synced) and one of the newest (maybe not)
                ids = sorted(self.rows)
                victim = self.rng.choice(ids[:-50] if round_no % 2 else ids[-50:])
                email = self.rows.pop(victim)[0]
                conn.execute(sa.delete(self.table).where(self.table.c.id == victim))
                self.deleted_emails.append(email)
                self.deletes += 1

    def delete(self, ids: list[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.id.in_(ids)))
        for i in ids:
            self.rows.pop(i)

    def remaining(self, cursor: Any) -> int:
        """Records an incremental run starting at this cursor reads."""
        stmt = sa.select(sa.func.count()).select_from(self.table)
        if cursor is not None:
            col = self.table.c.updated_at
            if self.engine.dialect.name == "sqlite":  # the engine compares stored text
                col = sa.type_coerce(col, sa.Text())
            stmt = stmt.where(col >= cursor)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)


@pytest.fixture
def sources() -> Any:
    """Source(url, rng), disposed of after the test."""
    made: list[Source] = []

    def make(url: str, rng: Random) -> Source:
        made.append(Source(url, rng))
        return made[-1]

    yield make
    for source in made:
        source.engine.dispose()


# -- the project -----------------------------------------------------------------------------
def write_project(tmp_path: Path, case: Case, os_url: str, wh_url: str,
                  state_url: str | None = None, batch: int = BATCH) -> Path:
    mapping = {"id": "source_id", "email": "email", "name": "full_name",
               "updated_at": "changed_at"}
    destination: dict[str, Any] = {
        "connectorInstanceId": "warehouse", "externalResource": "contacts",
        "operation": case.operation, "mapping": mapping, "matchKey": ["email"],
    }
    if case.table == "append":  # no key anywhere: every source record is appended once
        del destination["matchKey"], mapping["id"]
    sync: dict[str, Any] = {
        "name": SYNC, "source": {"object": "contact"}, "destination": destination,
        "syncMode": case.mode, "batchSize": batch,
        # a failing batch should fail the run now, not after the default 30 s back-off
        "retry": {"maxAttempts": 1, "backoffMs": 50},
    }
    if case.mode == "incremental":
        sync["changeTrackingField"] = "updated_at"
    if case.parallel:
        sync["optimization"] = {"parallelBatches": True}
    project = {
        "objectstack": {"url": os_url},
        "connectors": {"warehouse": {"type": "sql", "url": wh_url}},
        "syncs": [sync],
    }
    if state_url:
        project["state"] = {"url": state_url}
    path = tmp_path / "project.json"
    path.write_text(json.dumps(project, indent=2))
    return path


def precreate_destination(wh_url: str) -> None:
    engine = sa.create_engine(wh_url)
    sa.Table(
        "contacts", sa.MetaData(),
        sa.Column("source_id", sa.Integer),
        sa.Column("email", sa.String(120)),
        sa.Column("full_name", sa.String(120)),
        sa.Column("changed_at", sa.DateTime),
    ).create(engine)
    engine.dispose()


# -- killing a worker ------------------------------------------------------------------------
# -- reading the destination -----------------------------------------------------------------
def destination_rows(wh_url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(wh_url)
    try:
        table = sa.Table("contacts", sa.MetaData(), autoload_with=engine)
        cols = [c for c in ("source_id", "email", "full_name", "changed_at") if c in table.c]
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(*[table.c[c] for c in cols]))]
    finally:
        engine.dispose()


def tracked_records(state_url: str) -> int:
    """How many records the sync's state knows."""
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return StateStore(SYNC).count(conn)
    finally:
        engine.dispose()


def cursor_now(state_url: str) -> Any:
    """The sync's committed cursor, or None."""
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("_sync_assets_cursor"):
                return None
            return StateStore(SYNC).load_cursor(conn)
    finally:
        engine.dispose()


def stats_of(result: Any) -> dict[str, int]:
    spec = result.to_spec()
    assert spec["status"] == "completed", spec
    stats = spec["stats"]
    counters = ("recordsInserted", "recordsUpdated", "recordsDeleted", "recordsSkipped",
                "recordsErrored")
    assert stats["recordsProcessed"] == sum(stats[c] for c in counters), stats
    assert stats["recordsErrored"] == 0, spec
    return stats


# -- the test --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_sigkill_at_random_points_loses_and_doubles_nothing(
    case: Case, backend: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest,
    sources: Any,
) -> None:
    os_url, wh_url = backend
    rng = Random(f"crash-safety:{case.id}:{wh_url.split(':', 1)[0]}")
    source = sources(os_url, rng)
    source.seed(ROWS)
    if case.table == "precreated":
        precreate_destination(wh_url)
    project_file = write_project(tmp_path, case, os_url, wh_url)
    case_id = request.node.callspec.id
    pace = Pace()

    for round_no in range(KILLS):
        if case.mode == "incremental":
            reads = source.remaining(cursor_now(wh_url))
        else:
            reads = len(source.rows)
        batches = max(1, math.ceil(reads / BATCH))
        where, done = kill_one_run([sys.executable, str(WORKER), str(project_file), SYNC], rng,
                                   batches, case.operation == "sync", pace,
                                   tmp_path / "worker.err")
        KILL_LOG.append((case_id, where, done))
        source.change(round_no, case)

    landed = Counter(w for c, w, _ in KILL_LOG if c == case_id)
    print(f"\n{case_id}: {KILLS} kills: {dict(landed)}; batches committed before each kill: "
          f"{[d for c, _, d in KILL_LOG if c == case_id]}")
    # most kills must interrupt a run, or this test proves little
    assert landed["mid-run"] + landed["after last batch"] >= KILLS - 2, landed

    final_runs(project_file)
    assert_destination_exact(case, source, wh_url)


BIG_ROWS, BIG_BATCH, BIG_KILLS = 200_000, 5_000, 20


def test_sigkill_at_20_random_points_of_a_200k_row_upsert_into_mariadb(
        tmp_path: Path, mysql_url: str, sources: Any) -> None:
    """#11: the same guarantee on MariaDB (state beside the data, in its transactions)."""
    case = Case("upsert", "incremental", "created")
    os_url = f"sqlite:///{tmp_path}/os.db"
    rng = Random("crash-safety:mariadb")
    source = sources(os_url, rng)
    source.seed(BIG_ROWS)
    project_file = write_project(tmp_path, case, os_url, mysql_url, batch=BIG_BATCH)
    pace = Pace(first=[1.0], step=[0.3], tail=[0.5])
    landed: Counter[str] = Counter()
    for round_no in range(BIG_KILLS):
        reads = source.remaining(cursor_now(mysql_url))
        where, _done = kill_one_run([sys.executable, str(WORKER), str(project_file), SYNC],
                                    rng, max(1, math.ceil(reads / BIG_BATCH)), False, pace,
                                    tmp_path / "worker.err")
        landed[where] += 1
        source.change(round_no, case)
    print(f"\nmariadb: {BIG_KILLS} kills: {dict(landed)}")
    assert landed["mid-run"] + landed["after last batch"] >= BIG_KILLS - 3, landed
    final_runs(project_file)
    assert_destination_exact(case, source, mysql_url)


def final_runs(project_file: Path) -> None:
    """The final, unkilled run completes, and so does one more, which writes nothing."""
    project = load_project(project_file)
    stats_of(run(project, SYNC))
    again = stats_of(run(project, SYNC))
    assert (again["recordsInserted"], again["recordsUpdated"], again["recordsDeleted"]) == (
        0, 0, 0), again
    dispose_engines()


def assert_destination_exact(case: Case, source: Source, wh_url: str,
                             state_url: str | None = None) -> None:
    """The destination holds each expected record once, with the expected values."""
    rows = destination_rows(wh_url)
    expected_emails = {email for email, _, _ in source.rows.values()}
    if case.table == "append":
        got = Counter(rows)
        want = Counter((email, name, at) for email, name, at in source.rows.values())
        assert not (want - got), f"lost: {sorted(want - got)[:20]}"
        assert not (got - want), f"doubled or unexpected: {sorted(got - want)[:20]}"
    else:
        emails = Counter(r[1] for r in rows)
        doubled = {e: n for e, n in emails.items() if n > 1}
        assert not doubled, f"{len(doubled)} emails held more than once: {list(doubled)[:20]}"
        lost = expected_emails - set(emails)
        assert not lost, f"{len(lost)} records lost: {sorted(lost)[:20]}"
        extra = set(emails) - expected_emails
        assert not extra, f"{len(extra)} records that left the source remain: {sorted(extra)}"
        by_email = {r[1]: (r[0], r[2], r[3]) for r in rows}
        if case.operation == "insert":
            # insert writes a record once and never updates it: some version it had
            wrong = {e: v for e, v in by_email.items() if v not in source.versions[e]}
        else:
            latest = {email: (i, name, at) for i, (email, name, at) in source.rows.items()}
            wrong = {e: (v, latest[e]) for e, v in by_email.items() if v != latest[e]}
        assert not wrong, f"{len(wrong)} records hold wrong values: {list(wrong.items())[:10]}"
    assert tracked_records(state_url or wh_url) == len(rows) == len(source.rows)


# -- state apart from the destination ---------------------------------------------------------
@pytest.mark.parametrize("operation", ["upsert", "sync"])
def test_sigkill_between_data_commit_and_state_commit_with_state_apart(
    operation: str, backend: tuple[str, str], tmp_path: Path, sources: Any,
) -> None:
    """With the project's `state.url`, a batch's data commits first and its state second. Kill
    exactly between the two, several times: the next run must neither write the batch twice nor
    forget that this sync created its records (so `sync` still mirrors their deletion away)."""
    os_url, wh_url = backend
    state_url = os_url  # a database of its own, apart from the destination's
    case = Case(operation, "incremental", "precreated")  # no key: a doubled record would stay
    rng = Random(f"crash-safety:state-apart:{operation}:{wh_url.split(':', 1)[0]}")
    source = sources(os_url, rng)
    source.seed(3_000)
    precreate_destination(wh_url)
    project_file = write_project(tmp_path, case, os_url, wh_url, state_url)
    for round_no in range(3):
        batches = max(1, math.ceil(source.remaining(cursor_now(state_url)) / BATCH))
        nth = rng.randint(1, batches)  # the batch whose data commits and whose state does not
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(project_file), SYNC,
             "--kill-between-commits", str(nth)],
            capture_output=True, text=True, timeout=LINE_TIMEOUT,
        )
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
        assert proc.stdout.count("batch ") == nth - 1, proc.stdout
        source.change(round_no, case)
    final_runs(project_file)
    assert_destination_exact(case, source, wh_url, state_url)
    if operation == "sync":
        # records from every batch, among them the ones whose state a kill lost, leave the
        # source: the mirror must delete each of them
        source.delete(sorted(source.rows)[::60])
        final_runs(project_file)
        assert_destination_exact(case, source, wh_url, state_url)
