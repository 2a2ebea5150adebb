"""Bidirectional syncs: every conflict strategy over every kind of change, exact end states and
counters on SQLite and PostgreSQL; the manual strategy's life cycle; a stateful random test
against an oracle; changes made while a run is going.

Side A is the ObjectStack object `contact` (the sync's source), side B the table `sheet.rows`
(its destination). Rows are compared as (email, name, phone, updated) on both sides.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from sync_assets.connectors.sql import dispose_engines, get_engine
from sync_assets.engine import Progress, plan, run

from engine_helpers import codes, errors, status
from twoway_helpers import (
    STRATEGIES,
    T0,
    T1,
    T2,
    T3,
    Row,
    contact_table,
    create_a,
    create_b,
    edit,
    expect,
    make_project,
    put,
    raw_rows,
    remove,
    side_rows,
    stats,
    sync,
    twoway_sync,
)

Urls = tuple[str, str]


# -- the scenario table ------------------------------------------------------------------------
ANN = ("a@x", "Ann", "111", T0)
BOB = ("b@x", "Bob", "222", T0)
CY = ("c@x", "Cy", "333", T0)
BASE = [ANN, BOB, CY]
REST = [BOB, CY]  # the baseline without a@x

ANN_A = ("a@x", "Ann A", "111", T1)  # A renamed Ann at T1
ANN_A3 = ("a@x", "Ann A", "111", T3)  # A renamed Ann at T3, after B's edit
ANN_BN = ("a@x", "Ann B", "111", T2)  # B renamed Ann at T2
ANN_BP = ("a@x", "Ann", "999", T2)  # B changed Ann's phone at T2
ANN_MERGED = ("a@x", "Ann A", "999", T2)  # A's name, B's phone, the later stamp
ANN_X = ("a@x", "Ann X", "111", T1)  # the same change made on both sides
DEE = ("d@x", "Dee", "444", T1)  # created on A (and, equal, on B)
DEE_B = ("d@x", "Dee B", "555", T2)  # created on B, different from A's


def _edits(*steps: tuple[Any, ...]) -> Callable[[Urls], None]:
    """Edits applied after the baseline sync: ("edit", side, email, at, {field: value}),
    ("delete", side, email), ("insert", side, row)."""

    def apply(urls: Urls) -> None:
        for step in steps:
            side = step[1]
            url = urls[0] if side == "A" else urls[1]
            if step[0] == "edit":
                edit(url, side, step[2], at=step[3], **step[4])
            elif step[0] == "delete":
                remove(url, side, step[2])
            else:
                put(url, side, step[2])

    return apply


SCENARIOS: dict[str, Callable[[Urls], None]] = {
    "changed on A": _edits(("edit", "A", "a@x", T1, {"name": "Ann A"})),
    "changed on B": _edits(("edit", "B", "a@x", T2, {"phone": "999"})),
    "both, same field (B later)": _edits(("edit", "A", "a@x", T1, {"name": "Ann A"}),
                                         ("edit", "B", "a@x", T2, {"name": "Ann B"})),
    "both, same field (A later)": _edits(("edit", "A", "a@x", T3, {"name": "Ann A"}),
                                         ("edit", "B", "a@x", T2, {"name": "Ann B"})),
    "both, different fields": _edits(("edit", "A", "a@x", T1, {"name": "Ann A"}),
                                     ("edit", "B", "a@x", T2, {"phone": "999"})),
    "both, the same change": _edits(("edit", "A", "a@x", T1, {"name": "Ann X"}),
                                    ("edit", "B", "a@x", T1, {"name": "Ann X"})),
    "deleted on A": _edits(("delete", "A", "a@x")),
    "deleted on B": _edits(("delete", "B", "a@x")),
    "deleted on A, changed on B": _edits(("delete", "A", "a@x"),
                                         ("edit", "B", "a@x", T2, {"phone": "999"})),
    "changed on A, deleted on B": _edits(("edit", "A", "a@x", T1, {"name": "Ann A"}),
                                         ("delete", "B", "a@x")),
    "created on both, equal": _edits(("insert", "A", DEE), ("insert", "B", DEE)),
    "created on both, different": _edits(("insert", "A", DEE), ("insert", "B", DEE_B)),
}

# Conflict counters: detected and resolved (every strategy but manual resolves).
C = {"detected": 1, "resolved": 1}
OPEN = {"errored": 1, "detected": 1}  # manual: neither side written, the record errored

# (scenario, strategy) -> (A's rows, B's rows, the first run's counters)
Expected = tuple[list[Row], list[Row], dict[str, int]]
TABLE: dict[tuple[str, str], Expected] = {}

for _s in STRATEGIES:  # no conflict: every strategy does the same
    TABLE["changed on A", _s] = ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(updated=1, skipped=2))
    TABLE["changed on B", _s] = ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY],
                                 expect(updated=1, skipped=2))
    TABLE["both, the same change", _s] = ([ANN_X, BOB, CY], [ANN_X, BOB, CY], expect(skipped=3))
    TABLE["deleted on A", _s] = (REST, REST, expect(deleted=1, skipped=2))
    TABLE["deleted on B", _s] = (REST, REST, expect(deleted=1, skipped=2))
    TABLE["created on both, equal", _s] = ([*BASE, DEE], [*BASE, DEE], expect(skipped=4))

TABLE.update({
    # both changed the name; B's edit (T2) is later than A's (T1)
    ("both, same field (B later)", "source_wins"):
        ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (B later)", "destination_wins"):
        ([ANN_BN, BOB, CY], [ANN_BN, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (B later)", "latest_wins"):
        ([ANN_BN, BOB, CY], [ANN_BN, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (B later)", "manual"):
        ([ANN_A, BOB, CY], [ANN_BN, BOB, CY], expect(skipped=2, **OPEN)),
    ("both, same field (B later)", "merge"):
        ([ANN_BN, BOB, CY], [ANN_BN, BOB, CY], expect(updated=1, skipped=2, **C)),
    # both changed the name; A's edit (T3) is later than B's (T2)
    ("both, same field (A later)", "source_wins"):
        ([ANN_A3, BOB, CY], [ANN_A3, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (A later)", "destination_wins"):
        ([ANN_BN, BOB, CY], [ANN_BN, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (A later)", "latest_wins"):
        ([ANN_A3, BOB, CY], [ANN_A3, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, same field (A later)", "manual"):
        ([ANN_A3, BOB, CY], [ANN_BN, BOB, CY], expect(skipped=2, **OPEN)),
    ("both, same field (A later)", "merge"):
        ([ANN_A3, BOB, CY], [ANN_A3, BOB, CY], expect(updated=1, skipped=2, **C)),
    # A changed the name (T1), B the phone (T2)
    ("both, different fields", "source_wins"):
        ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, different fields", "destination_wins"):
        ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, different fields", "latest_wins"):
        ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY], expect(updated=1, skipped=2, **C)),
    ("both, different fields", "manual"):
        ([ANN_A, BOB, CY], [ANN_BP, BOB, CY], expect(skipped=2, **OPEN)),
    ("both, different fields", "merge"):
        ([ANN_MERGED, BOB, CY], [ANN_MERGED, BOB, CY], expect(updated=1, skipped=2, **C)),
    # A deleted the record, B changed its phone (T2): an edit beats a delete where time decides
    ("deleted on A, changed on B", "source_wins"):
        (REST, REST, expect(deleted=1, skipped=2, **C)),
    ("deleted on A, changed on B", "destination_wins"):
        ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY], expect(inserted=1, skipped=2, **C)),
    ("deleted on A, changed on B", "latest_wins"):
        ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY], expect(inserted=1, skipped=2, **C)),
    ("deleted on A, changed on B", "manual"):
        (REST, [ANN_BP, BOB, CY], expect(skipped=2, **OPEN)),
    ("deleted on A, changed on B", "merge"):
        ([ANN_BP, BOB, CY], [ANN_BP, BOB, CY], expect(inserted=1, skipped=2, **C)),
    # A changed the name (T1), B deleted the record
    ("changed on A, deleted on B", "source_wins"):
        ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(inserted=1, skipped=2, **C)),
    ("changed on A, deleted on B", "destination_wins"):
        (REST, REST, expect(deleted=1, skipped=2, **C)),
    ("changed on A, deleted on B", "latest_wins"):
        ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(inserted=1, skipped=2, **C)),
    ("changed on A, deleted on B", "manual"):
        ([ANN_A, BOB, CY], REST, expect(skipped=2, **OPEN)),
    ("changed on A, deleted on B", "merge"):
        ([ANN_A, BOB, CY], [ANN_A, BOB, CY], expect(inserted=1, skipped=2, **C)),
    # d@x created on both sides with different values: A's at T1, B's at T2
    ("created on both, different", "source_wins"):
        ([*BASE, DEE], [*BASE, DEE], expect(updated=1, skipped=3, **C)),
    ("created on both, different", "destination_wins"):
        ([*BASE, DEE_B], [*BASE, DEE_B], expect(updated=1, skipped=3, **C)),
    ("created on both, different", "latest_wins"):
        ([*BASE, DEE_B], [*BASE, DEE_B], expect(updated=1, skipped=3, **C)),
    ("created on both, different", "manual"):
        ([*BASE, DEE], [*BASE, DEE_B], expect(skipped=3, **OPEN)),
    # no common ancestor: every differing field changed on both sides, the later one wins
    ("created on both, different", "merge"):
        ([*BASE, DEE_B], [*BASE, DEE_B], expect(updated=1, skipped=3, **C)),
})
assert set(TABLE) == {(s, k) for s in SCENARIOS for k in STRATEGIES}


def _baseline(tmp_path: Path, urls: Urls, strategy: str, **extra: Any) -> Any:
    """A synced baseline: A holds three records, the first run copies them to B."""
    create_a(urls[0], BASE)
    proj = make_project(tmp_path, urls, twoway_sync(strategy, **extra))
    first = sync(proj)
    assert stats(first) == expect(inserted=3), stats(first)
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == BASE
    return proj


@pytest.mark.parametrize(("scenario", "strategy"), list(TABLE), ids=[
    f"{scenario}-{strategy}".replace(" ", "_").replace(",", "") for scenario, strategy in TABLE])
def test_scenario(sides: Urls, tmp_path: Path, scenario: str, strategy: str) -> None:
    urls = sides
    proj = _baseline(tmp_path, urls, strategy)
    SCENARIOS[scenario](urls)
    want_a, want_b, want_stats = TABLE[scenario, strategy]

    result = sync(proj)
    assert (side_rows(urls[0], "A"), side_rows(urls[1], "B"), stats(result)) == (
        want_a, want_b, want_stats)
    manual_conflict = strategy == "manual" and want_stats["recordsErrored"] == 1
    assert status(result) == ("partial" if manual_conflict else "completed")
    assert codes(result) == (["CONFLICT"] if manual_conflict else [])

    # Run again: nothing to do, nothing written (no echo of the first run's writes).
    before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
    again = sync(proj)
    assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before
    keys = len({r[0] for r in want_a} | {r[0] for r in want_b})
    if manual_conflict:  # still open: reported again, counted once as errored
        assert stats(again) == expect(skipped=keys - 1, errored=1)
        assert codes(again) == ["CONFLICT"] and status(again) == "partial"
    else:
        assert stats(again) == expect(skipped=keys)
        assert status(again) == "completed" and errors(again) == []

    # The synced state is what each side now holds: a later edit on either side flows as a
    # plain one-sided change, not a conflict (a side remembered with its pre-write version
    # would look changed, and meet the edit as a conflict).
    open_key = "d@x" if scenario.startswith("created") else "a@x"
    on_both = {r[0] for r in want_a} & {r[0] for r in want_b}
    touched = next(k for k in ("d@x", "a@x", "b@x") if k in on_both)
    still_open = int(manual_conflict and touched != open_key)
    for side, at, values in (("B", T3 + timedelta(hours=1), {"phone": "777"}),
                             ("A", T3 + timedelta(hours=2), {"name": "Zed"})):
        edit(urls[0] if side == "A" else urls[1], side, touched, at=at, **values)
        later = sync(proj)
        assert stats(later) == expect(updated=1, skipped=keys - 1 - still_open,
                                      errored=still_open), (side, touched)
        a_now, b_now = side_rows(urls[0], "A"), side_rows(urls[1], "B")
        assert [r for r in a_now if r[0] == touched] == [r for r in b_now if r[0] == touched]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("side", ["A", "B"])
def test_a_side_written_by_a_run_is_not_seen_as_changed(sides: Urls, tmp_path: Path,
                                                        strategy: str, side: str) -> None:
    """No echo: the run that copies `side`'s edit to the other side records what it wrote, so
    when `side` edits the record again right away, that is a one-sided change, no conflict."""
    urls = sides
    proj = _baseline(tmp_path, urls, strategy)
    url = urls[0] if side == "A" else urls[1]
    edit(url, side, "a@x", at=T1, name="Ann 1")
    assert stats(sync(proj)) == expect(updated=1, skipped=2)
    edit(url, side, "a@x", at=T2, name="Ann 2")
    second = sync(proj)
    assert stats(second) == expect(updated=1, skipped=2)
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == [
        ("a@x", "Ann 2", "111", T2), BOB, CY]


def test_an_existing_b_table_holding_text_does_not_echo(sides: Urls, tmp_path: Path) -> None:
    """B made by its owner, not by the engine: `Updated` is a text column (as in a sheet).
    What the run writes there reads back as text; the run must remember the version B now
    holds, so the next runs see no change, write nothing, and fail nowhere."""
    urls = sides
    create_a(urls[0], BASE)
    text_rows = sa.Table("rows", sa.MetaData(), *[
        sa.Column(name, sa.Text, primary_key=name == "Email")
        for name in ("Email", "Name", "Phone", "Updated")])
    with get_engine(urls[1]).begin() as conn:
        text_rows.create(conn)
    proj = make_project(tmp_path, urls, twoway_sync("latest_wins"))
    assert stats(sync(proj)) == expect(inserted=3)
    before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
    for _ in range(2):
        again = sync(proj)
        assert (stats(again), status(again)) == (expect(skipped=3), "completed"), errors(again)
        assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before


def test_a_value_a_cannot_store_fails_the_run_with_a_result(sides: Urls,
                                                            tmp_path: Path) -> None:
    """B's text `Updated` holds something that is no timestamp. Writing it to A's timestamp
    column fails; run() reports that in its SyncExecutionResult (PROTOCOL_NOTES B, Counting:
    a failed run still leaves its result), it does not raise."""
    urls = sides
    create_a(urls[0])
    text_rows = sa.Table("rows", sa.MetaData(), *[
        sa.Column(name, sa.Text, primary_key=name == "Email")
        for name in ("Email", "Name", "Phone", "Updated")])
    with get_engine(urls[1]).begin() as conn:
        text_rows.create(conn)
        conn.execute(text_rows.insert(), [
            {"Email": "a@x", "Name": "Ann", "Phone": "1", "Updated": "last Tuesday-ish"}])
    proj = make_project(tmp_path, urls, twoway_sync("latest_wins"))
    waits: list[float] = []
    result = run(proj, "contacts", sleep=waits.append)
    assert status(result) in ("failed", "partial") and errors(result), result.to_spec()
    assert side_rows(urls[0], "A") == []
    # the default errorHandling (onSyncError: retry) retries as a push does: 3 x 30 s
    assert waits == [30.0, 30.0, 30.0]


def test_a_record_created_on_b_outside_the_source_filter_is_not_deleted(
        sides: Urls, tmp_path: Path) -> None:
    """source.filters limits A to kind = person; `kind` is not mapped, so a record created on B
    lands on A without it. The run after that must not take the record for one deleted on A:
    no user deleted anything, and a run right after a run writes nothing."""
    urls = sides
    table = contact_table(sa.MetaData(), sa.Column("kind", sa.String(20)))
    with get_engine(urls[0]).begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [
            {"email": "a@x", "name": "Ann", "phone": "111", "updated_at": T0, "kind": "person"}])
    proj = make_project(tmp_path, urls, twoway_sync("latest_wins", source={
        "object": "contact", "filters": {"kind": "person"}}))
    assert stats(sync(proj)) == expect(inserted=1)
    put(urls[1], "B", ("n@x", "New", "444", T1))
    sync(proj)
    assert ("n@x", "New", "444", T1) in side_rows(urls[0], "A")
    after = raw_rows(urls[1], "rows")
    again = sync(proj)
    assert stats(again)["recordsDeleted"] == 0
    assert raw_rows(urls[1], "rows") == after  # B's record is still there
    assert ("n@x", "New", "444", T1) in side_rows(urls[1], "B")


def test_plan_before_the_first_run_counts_like_a_run(sides: Urls, tmp_path: Path) -> None:
    urls = sides
    create_a(urls[0], BASE)
    proj = make_project(tmp_path, urls, twoway_sync("latest_wins"))
    planned = plan(proj, "contacts")
    assert (planned.stats, status(planned.result)) == (expect(inserted=3), "completed"), \
        errors(planned.result)
    assert stats(sync(proj)) == expect(inserted=3)


def test_plan_before_the_first_run_creates_nothing(sides: Urls, tmp_path: Path) -> None:
    """plan() walks a run and rolls it back: no table created on B, no state anywhere."""
    urls = sides
    create_a(urls[0], BASE)
    proj = make_project(tmp_path, urls, twoway_sync("latest_wins"))
    plan(proj, "contacts")
    assert [sorted(sa.inspect(get_engine(u)).get_table_names()) for u in urls] == [
        ["contact"], []]


@pytest.mark.parametrize("strategy", ["merge", "manual"])
def test_plan_counts_what_the_run_then_does(sides: Urls, tmp_path: Path, strategy: str) -> None:
    urls = sides
    proj = _baseline(tmp_path, urls, strategy)
    SCENARIOS["both, different fields"](urls)
    remove(urls[0], "A", "c@x")
    before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
    planned = plan(proj, "contacts")
    assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before
    result = sync(proj)
    want = (expect(updated=1, deleted=1, skipped=1, **C) if strategy == "merge" else
            expect(deleted=1, skipped=1, **OPEN))
    assert stats(result) == want
    assert planned.stats == want


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> Iterator[Urls]:
    yield f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    dispose_engines()


def test_conflict_error_names_the_record(tmp_path: Path, sqlite_urls: Urls) -> None:
    """A CONFLICT error item's recordId is the record's id (its match key value, as the same
    engine reports a record it cannot read), not the engine's internal JSON key."""
    urls = sqlite_urls
    proj = _baseline(tmp_path, urls, "manual")
    SCENARIOS["both, same field (B later)"](urls)
    result = sync(proj)
    assert [(e["code"], e.get("recordId")) for e in errors(result)] == [("CONFLICT", "a@x")]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deletes_propagate_only_with_operation_sync(sides: Urls, tmp_path: Path,
                                                   strategy: str) -> None:
    urls = sides
    proj = _baseline(tmp_path, urls, strategy, operation="upsert")
    remove(urls[0], "A", "a@x")
    remove(urls[1], "B", "b@x")
    result = sync(proj)
    assert stats(result) == expect(skipped=3)
    assert side_rows(urls[0], "A") == [BOB, CY]
    assert side_rows(urls[1], "B") == [ANN, CY]
    again = sync(proj)  # nothing comes back
    assert stats(again) == expect(skipped=3)
    assert side_rows(urls[0], "A") == [BOB, CY]
    assert side_rows(urls[1], "B") == [ANN, CY]
    edit(urls[0], "A", "c@x", at=T1, name="Cy A")  # ordinary changes still flow
    edit(urls[1], "B", "a@x", at=T2, name="Ann B")
    third = sync(proj)
    assert side_rows(urls[0], "A") == [("a@x", "Ann B", "111", T2), BOB,
                                       ("c@x", "Cy A", "333", T1)]
    assert side_rows(urls[1], "B") == [("a@x", "Ann B", "111", T2),
                                       ("c@x", "Cy A", "333", T1)]
    assert stats(third) == expect(inserted=1, updated=1, skipped=1)


# -- manual: the conflict stays open until one side changes ------------------------------------
@pytest.mark.parametrize("resolve", ["A changes again", "B changes again", "A copies B",
                                     "A deletes"])
def test_manual_conflict_stays_open_until_one_side_changes(backend: Urls, tmp_path: Path,
                                                           resolve: str) -> None:
    urls = backend
    proj = _baseline(tmp_path, urls, "manual")
    SCENARIOS["both, same field (B later)"](urls)  # A: Ann A @T1, B: Ann B @T2
    first = sync(proj)
    assert stats(first) == expect(skipped=2, errored=1, detected=1)
    for _ in range(2):  # open on every run, nothing written
        before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
        again = sync(proj)
        assert stats(again) == expect(skipped=2, errored=1)
        assert codes(again) == ["CONFLICT"] and status(again) == "partial"
        assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before
    assert side_rows(urls[0], "A") == [ANN_A, BOB, CY]
    assert side_rows(urls[1], "B") == [ANN_BN, BOB, CY]

    if resolve == "A changes again":
        edit(urls[0], "A", "a@x", at=T3, name="Ann C")
        want, counted = [("a@x", "Ann C", "111", T3), BOB, CY], expect(updated=1, skipped=2)
    elif resolve == "B changes again":
        # an earlier stamp than A's edit: the changed side wins, whatever the clock says
        edit(urls[1], "B", "a@x", at=T0, phone="000")
        want, counted = [("a@x", "Ann B", "000", T0), BOB, CY], expect(updated=1, skipped=2)
    elif resolve == "A copies B":  # both sides now agree: nothing to write
        edit(urls[0], "A", "a@x", at=T2, name="Ann B")
        want, counted = [ANN_BN, BOB, CY], expect(skipped=3)
    else:
        remove(urls[0], "A", "a@x")
        want, counted = [BOB, CY], expect(deleted=1, skipped=2)
    resolved = sync(proj)
    assert stats(resolved) == counted
    assert status(resolved) == "completed" and errors(resolved) == []
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want
    clean = sync(proj)
    assert stats(clean) == expect(skipped=len(want))
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want


def test_manual_conflict_changed_on_both_again_is_a_new_conflict(tmp_path: Path,
                                                                 sqlite_urls: Urls) -> None:
    urls = sqlite_urls
    proj = _baseline(tmp_path, urls, "manual")
    SCENARIOS["both, same field (B later)"](urls)
    assert stats(sync(proj)) == expect(skipped=2, errored=1, detected=1)
    edit(urls[0], "A", "a@x", at=T3, name="Ann A2")
    edit(urls[1], "B", "a@x", at=T3 + timedelta(hours=1), name="Ann B2")
    again = sync(proj)
    assert stats(again) == expect(skipped=2, errored=1, detected=1)
    assert codes(again) == ["CONFLICT"]
    edit(urls[1], "B", "a@x", at=T3 + timedelta(hours=2), name="Ann B3")
    assert stats(sync(proj)) == expect(updated=1, skipped=2)
    want = [("a@x", "Ann B3", "111", T3 + timedelta(hours=2)), BOB, CY]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want


# -- changes made while a run is going ---------------------------------------------------------
SIX = [(f"{c}@x", c.upper(), f"{i}{i}{i}", T0) for i, c in enumerate("abcdef", start=1)]


def _six(tmp_path: Path, urls: Urls, strategy: str = "latest_wins") -> Any:
    create_a(urls[0], SIX)
    proj = make_project(tmp_path, urls, twoway_sync(strategy, batch_size=2))
    assert stats(sync(proj)) == expect(inserted=6)
    return proj


def _during_first_batch(action: Callable[[], None]) -> Callable[[Progress], None]:
    calls: list[int] = []

    def progress(p: Progress) -> None:
        calls.append(p.read)
        if len(calls) == 1:
            assert p.read == 2 and p.total == 6
            action()

    return progress


@pytest.mark.parametrize("side", ["A", "B"])
def test_edit_during_a_run_is_not_lost(backend: Urls, tmp_path: Path, side: str) -> None:
    """A record of a later batch edited on one side while the run is going."""
    urls = backend
    proj = _six(tmp_path, urls)
    url = urls[0] if side == "A" else urls[1]
    edit(urls[0], "A", "a@x", at=T1, name="A1")  # something for the run to do in batch 1

    def action() -> None:
        edit(url, side, "e@x", at=T2, name="E during")

    first = sync(proj, progress=_during_first_batch(action))
    assert first.to_spec()["status"] == "completed"
    sync(proj)
    want = [("a@x", "A1", "111", T1), *SIX[1:4], ("e@x", "E during", "555", T2), SIX[5]]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want
    assert stats(sync(proj)) == expect(skipped=6)


@pytest.mark.parametrize("side", ["A", "B"])
def test_edit_during_a_run_of_a_record_with_a_pending_change(backend: Urls, tmp_path: Path,
                                                             side: str) -> None:
    """The record the run is about to copy is changed again on the same side meanwhile: the
    run copies what it read (or leaves the row), the next run copies the newer edit."""
    urls = backend
    proj = _six(tmp_path, urls)
    url = urls[0] if side == "A" else urls[1]
    edit(url, side, "e@x", at=T1, name="E before")

    def action() -> None:
        edit(url, side, "e@x", at=T2, name="E during")

    sync(proj, progress=_during_first_batch(action))
    second = sync(proj)
    assert second.to_spec()["status"] == "completed"
    want = [*SIX[:4], ("e@x", "E during", "555", T2), SIX[5]]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want
    assert stats(sync(proj)) == expect(skipped=6)


@pytest.mark.parametrize("side", ["A", "B"])
def test_edit_during_a_run_on_the_side_being_written(backend: Urls, tmp_path: Path,
                                                     side: str) -> None:
    """The run is about to copy a change to the other side, which is edited meanwhile: the
    guarded write leaves that row alone; the next run sees a conflict and latest_wins keeps
    the newer (in-run) edit."""
    urls = backend
    proj = _six(tmp_path, urls, "latest_wins")
    other = "B" if side == "A" else "A"
    edit(urls[0] if side == "A" else urls[1], side, "e@x", at=T1, name="E before")

    def action() -> None:
        edit(urls[0] if other == "A" else urls[1], other, "e@x", at=T2, phone="000")

    first = sync(proj, progress=_during_first_batch(action))
    assert first.to_spec()["status"] == "completed"
    assert stats(first) == expect(skipped=6)  # e@x left for the next run
    second = sync(proj)
    assert stats(second) == expect(updated=1, skipped=5, detected=1, resolved=1)
    want_e = ("e@x", "E", "000", T2)
    want = [*SIX[:4], want_e, SIX[5]]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want
    assert stats(sync(proj)) == expect(skipped=6)


@pytest.mark.parametrize("deleted_on", ["A", "B"])
def test_a_delete_meets_an_edit_made_during_the_run(backend: Urls, tmp_path: Path,
                                                   deleted_on: str) -> None:
    """The run is about to copy a delete, and the other side edits the record meanwhile: the
    guarded delete leaves it; the next run sees a delete against an edit, and the edit wins."""
    urls = backend
    proj = _six(tmp_path, urls, "latest_wins")
    other = "B" if deleted_on == "A" else "A"
    remove(urls[0] if deleted_on == "A" else urls[1], deleted_on, "e@x")

    def action() -> None:
        edit(urls[0] if other == "A" else urls[1], other, "e@x", at=T2, name="E kept")

    first = sync(proj, progress=_during_first_batch(action))
    assert stats(first) == expect(skipped=6)
    second = sync(proj)
    assert stats(second) == expect(inserted=1, skipped=5, detected=1, resolved=1)
    want = [*SIX[:4], ("e@x", "E kept", "555", T2), SIX[5]]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want


def test_insert_and_delete_during_a_run(backend: Urls, tmp_path: Path) -> None:
    urls = backend
    proj = _six(tmp_path, urls)

    def action() -> None:
        put(urls[1], "B", ("g@x", "G", "777", T2))  # a record created meanwhile
        remove(urls[0], "A", "f@x")  # a record of a later batch deleted meanwhile

    sync(proj, progress=_during_first_batch(action))
    sync(proj)
    want = [*SIX[:5], ("g@x", "G", "777", T2)]
    assert side_rows(urls[0], "A") == side_rows(urls[1], "B") == want
    assert stats(sync(proj)) == expect(skipped=6)


# -- the stateful random test ------------------------------------------------------------------
KEYS = [f"k{i}@x" for i in range(4)]
NAMES = st.sampled_from(["Ann", "Bob", "Cy"])
PHONES = st.sampled_from(["1", "2", "3", None])
SIDES = st.sampled_from(["A", "B"])

_TRIGGERS = """
CREATE TABLE _writes (op TEXT, email TEXT);
CREATE TRIGGER w_ins AFTER INSERT ON {t} BEGIN INSERT INTO _writes VALUES ('i', NEW.{k}); END;
CREATE TRIGGER w_upd AFTER UPDATE ON {t} BEGIN INSERT INTO _writes VALUES ('u', NEW.{k}); END;
CREATE TRIGGER w_del AFTER DELETE ON {t} BEGIN INSERT INTO _writes VALUES ('d', OLD.{k}); END;
"""


def _later(a: Row, b: Row) -> bool:
    """latest_wins: A's version is at least as recent as B's."""
    return bool(a[3] >= b[3])


class _Oracle:
    """What a run must do, from both sides' rows and what was last synced (PROTOCOL_NOTES B)."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.base: dict[str, Row] = {}  # the synced version of each record
        self.open: dict[str, tuple[Row | None, Row | None]] = {}  # manual: versions in conflict

    def _resolve(self, key: str, a: Row | None, b: Row | None) -> Row | None:
        s = self.strategy
        if s == "source_wins":
            return a
        if s == "destination_wins":
            return b
        if a is None or b is None:  # latest_wins and merge: an edit beats a delete
            return a if a is not None else b
        if s == "latest_wins":
            return a if _later(a, b) else b
        base = self.base.get(key)
        out = [a[0]]
        for i in (1, 2, 3):
            va, vb, vbase = a[i], b[i], base[i] if base else None
            if va == vb or vb == vbase:
                out.append(va)
            elif va == vbase:
                out.append(vb)
            else:
                out.append(va if _later(a, b) else b[i])
        return tuple(out)

    def run(self, before_a: dict[str, Row], before_b: dict[str, Row]
            ) -> tuple[dict[str, Row], dict[str, Row], dict[str, int]]:
        after_a, after_b = dict(before_a), dict(before_b)
        counts = dict.fromkeys(["inserted", "updated", "deleted", "skipped", "errored",
                                "detected", "resolved"], 0)
        keys = set(before_a) | set(before_b) | set(self.base) | set(self.open)
        for k in sorted(keys):
            a, b = before_a.get(k), before_b.get(k)
            if k in self.open:
                ref_a, ref_b = self.open[k]
            else:
                ref_a = ref_b = self.base.get(k)
            a_changed, b_changed = a != ref_a, b != ref_b
            if not a_changed and not b_changed:
                if k in self.open:
                    counts["errored"] += 1
                else:
                    assert a == b, (k, a, b)
                    counts["skipped"] += 1
                continue
            if a_changed and not b_changed:
                winner = a
            elif b_changed and not a_changed:
                winner = b
            elif a == b:
                winner = a
            else:
                counts["detected"] += 1
                if self.strategy == "manual":
                    self.open[k] = (a, b)
                    counts["errored"] += 1
                    continue
                counts["resolved"] += 1
                winner = self._resolve(k, a, b)
            self.open.pop(k, None)
            for side in (after_a, after_b):
                if winner is None:
                    side.pop(k, None)
                else:
                    side[k] = winner
            if after_a.get(k) == a and after_b.get(k) == b:
                counts["skipped"] += 1
            elif winner is None:
                counts["deleted"] += 1
            elif a is None or b is None:
                counts["inserted"] += 1
            else:
                counts["updated"] += 1
            if winner is None:
                self.base.pop(k, None)
            else:
                self.base[k] = winner
        return after_a, after_b, counts


class TwoWayMachine(RuleBasedStateMachine):
    """Random edits on both sides interleaved with runs, checked against `_Oracle`; SQLite
    triggers log every row each run writes, to catch echoes and rewrites of equal values."""

    strategy = "latest_wins"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="twoway-sm-"))
        self.urls = (f"sqlite:///{self.dir}/a.db", f"sqlite:///{self.dir}/b.db")
        create_a(self.urls[0])
        create_b(self.urls[1])
        self.engines = [get_engine(u) for u in self.urls]
        for engine, (table, key) in zip(self.engines, [("contact", "email"), ("rows", "Email")],
                                        strict=True):
            raw = engine.raw_connection()
            try:
                raw.executescript(_TRIGGERS.format(t=table, k=key))  # type: ignore[attr-defined]
            finally:
                raw.close()
        self.project = make_project(self.dir, self.urls,
                                    twoway_sync(self.strategy, batch_size=2))
        self.oracle = _Oracle(self.strategy)
        self.clock = T0
        self.changed = {"A": False, "B": False}  # edits since the last run

    def teardown(self) -> None:
        dispose_engines()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(names=st.lists(NAMES, min_size=len(KEYS) - 1, max_size=len(KEYS) - 1),
                on_b=st.sampled_from(KEYS))
    def synced_baseline(self, names: list[str], on_b: str) -> None:
        """Records on A and one on B, synced: later edits meet records known to both."""
        at = self._tick()
        for key, name in zip(KEYS, names, strict=False):
            if key != on_b:
                self._write("A", key, "upsert", name, "1", at)
        self._write("B", on_b, "upsert", "Bee", "2", at)
        self._run_and_check()

    # -- edits -------------------------------------------------------------------------------
    def _tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def _url(self, side: str) -> str:
        return self.urls[0] if side == "A" else self.urls[1]

    def _rows(self, side: str) -> dict[str, Row]:
        return {r[0]: r for r in side_rows(self._url(side), side)}

    def _write(self, side: str, key: str, op: str, name: str, phone: str | None,
               at: datetime) -> None:
        present = key in self._rows(side)
        url = self._url(side)
        if op == "delete":
            if present:
                remove(url, side, key)
        elif present:
            edit(url, side, key, at=at, name=name, phone=phone)
        else:
            put(url, side, (key, name, phone, at))
        self.changed[side] = True

    @rule(side=SIDES, key=st.sampled_from(KEYS), name=NAMES, phone=PHONES)
    def upsert(self, side: str, key: str, name: str, phone: str | None) -> None:
        self._write(side, key, "upsert", name, phone, self._tick())

    @rule(side=SIDES, key=st.sampled_from(KEYS), field=st.sampled_from(["name", "phone"]),
          value=st.sampled_from(["Ann", "Bob", "9"]))
    def update_one_field(self, side: str, key: str, field: str, value: str) -> None:
        if key in self._rows(side):
            edit(self._url(side), side, key, at=self._tick(), **{field: value})
            self.changed[side] = True

    @rule(side=SIDES, key=st.sampled_from(KEYS))
    def delete(self, side: str, key: str) -> None:
        self._write(side, key, "delete", "", None, self._tick())

    @rule(key=st.sampled_from(KEYS), op_a=st.sampled_from(["upsert", "delete"]),
          op_b=st.sampled_from(["upsert", "delete"]), name_a=NAMES, name_b=NAMES,
          b_first=st.booleans(), run_now=st.booleans())
    def same_key_on_both_sides(self, key: str, op_a: str, op_b: str, name_a: str,
                               name_b: str, b_first: bool, run_now: bool) -> None:
        first, second = self._tick(), self._tick()
        at_a, at_b = (second, first) if b_first else (first, second)
        self._write("A", key, op_a, name_a, "1", at_a)
        self._write("B", key, op_b, name_b, "1", at_b)
        if run_now:
            self._run_and_check()

    @rule(key=st.sampled_from(KEYS), name=NAMES)
    def same_change_on_both_sides(self, key: str, name: str) -> None:
        at = self._tick()
        for side in ("A", "B"):
            self._write(side, key, "upsert", name, "2", at)

    # -- runs --------------------------------------------------------------------------------
    def _writes(self) -> list[list[tuple[str, str]]]:
        out = []
        for engine in self.engines:
            with engine.begin() as conn:
                out.append([tuple(r) for r in conn.execute(sa.text(
                    "SELECT op, email FROM _writes"))])
                conn.execute(sa.text("DELETE FROM _writes"))
        return out

    def _run_and_check(self) -> dict[str, int]:
        before_a, before_b = self._rows("A"), self._rows("B")
        raw_before = raw_rows(self.urls[0], "contact"), raw_rows(self.urls[1], "rows")
        self._writes()  # forget the test's own edits
        want_a, want_b, want = self.oracle.run(before_a, before_b)
        for what in ("detected", "inserted", "updated", "deleted", "errored"):
            if want[what]:
                event(f"a run with records {what}" if what != "detected" else
                      "a run with conflicts")
        result = sync(self.project)
        got = stats(result)
        writes_a, writes_b = self._writes()
        after_a, after_b = self._rows("A"), self._rows("B")
        assert (after_a, after_b) == (want_a, want_b)
        short = {"inserted": "recordsInserted", "updated": "recordsUpdated",
                 "deleted": "recordsDeleted", "skipped": "recordsSkipped",
                 "errored": "recordsErrored", "detected": "conflictsDetected",
                 "resolved": "conflictsResolved"}
        assert {k: got[v] for k, v in short.items()} == want, (got, want)
        assert codes(result) == ["CONFLICT"] * want["errored"]
        # Only records whose version changed on a side are written there, once each...
        for writes, before, after in ((writes_a, before_a, after_a),
                                      (writes_b, before_b, after_b)):
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            assert sorted(email for _, email in writes) == changed, writes
        # ...so a side with nothing to absorb is untouched, to the byte.
        if not self.changed["B"]:
            assert raw_rows(self.urls[0], "contact") == raw_before[0]
        if not self.changed["A"]:
            assert raw_rows(self.urls[1], "rows") == raw_before[1]
        self.changed = {"A": False, "B": False}
        return got

    @rule()
    def run_sync(self) -> None:
        self._run_and_check()

    @rule()
    def run_twice(self) -> None:
        self._run_and_check()
        again = self._run_and_check()  # a run right after a run writes nothing
        assert again["recordsInserted"] == again["recordsUpdated"] == 0
        assert again["recordsDeleted"] == again["conflictsDetected"] == 0


def _machine(strategy: str) -> type[RuleBasedStateMachine]:
    return type(f"TwoWay_{strategy}", (TwoWayMachine,), {"strategy": strategy})


_SETTINGS = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestTwoWaySourceWins = _SETTINGS(_machine("source_wins")).TestCase
TestTwoWayDestinationWins = _SETTINGS(_machine("destination_wins")).TestCase
TestTwoWayLatestWins = _SETTINGS(_machine("latest_wins")).TestCase
TestTwoWayMerge = _SETTINGS(_machine("merge")).TestCase
TestTwoWayManual = _SETTINGS(_machine("manual")).TestCase
