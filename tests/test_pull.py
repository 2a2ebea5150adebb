"""Pull syncs: records flow from the external table (B, the destination) to the ObjectStack
object (A, the source) through the mapping read backwards; and direction is relative to
ObjectStack, also for a push whose ObjectStack endpoint is the destination.

PROTOCOL_NOTES part B, Direction: renames, one-to-one maps and casts are inverted (a cast back
to the A column's type); constant, lookup and expression fields flow one way only, and loading
the project says so.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sync_assets.engine import plan

from engine_helpers import codes, status
from twoway_helpers import (
    engine_for,
    expect,
    make_project,
    raw_rows,
    stats,
    sync,
)

Urls = tuple[str, str]


# -- side A: the ObjectStack object; side B: the external table -------------------------------
CONTACT = sa.Table(
    "contact", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("score", sa.Integer),
    sa.Column("active", sa.Boolean),
    sa.Column("born", sa.Date),
    sa.Column("status", sa.String(5)),
    sa.Column("origin", sa.String(50)),
    sa.Column("country_id", sa.Integer),
)
COUNTRIES = sa.Table(
    "countries", CONTACT.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text),
)
ROWS = sa.Table(
    "rows", sa.MetaData(),
    sa.Column("Email", sa.Text, primary_key=True),
    sa.Column("Name", sa.Text),
    sa.Column("Score", sa.Text),
    sa.Column("Active", sa.Text),
    sa.Column("Born", sa.Text),
    sa.Column("Status", sa.Text),
    sa.Column("Source", sa.Text),
    sa.Column("Country", sa.Text),
    sa.Column("Shout", sa.Text),
)
A_COLS = ("email", "name", "score", "active", "born", "status", "origin", "country_id")
B_COLS = ("Email", "Name", "Score", "Active", "Born", "Status", "Source", "Country", "Shout")

MAPPING: list[dict[str, Any]] = [
    {"source": "email", "target": "Email"},
    {"source": "name", "target": "Name"},
    {"source": "score", "target": "Score", "transform": {"type": "cast", "targetType": "string"}},
    {"source": "active", "target": "Active",
     "transform": {"type": "cast", "targetType": "string"}},
    {"source": "born", "target": "Born", "transform": {"type": "cast", "targetType": "string"}},
    {"source": "status", "target": "Status",
     "transform": {"type": "map", "mappings": {"a": "Active", "i": "Inactive"}}},
    {"source": "origin", "target": "Source",
     "transform": {"type": "constant", "value": "objectstack"}},
    {"source": "country_id", "target": "Country",
     "transform": {"type": "lookup", "table": "countries", "keyField": "id",
                   "valueField": "name"}},
    {"source": "name", "target": "Shout",
     "transform": {"type": "javascript", "expression": "value.upperAscii()"}},
]
ONE_WAY = {6: "origin -> Source", 7: "country_id -> Country", 8: "name -> Shout"}

# A's own records: z@x exists only on A; p@x exists on both before the first pull.
ZOE = {"email": "z@x", "name": "Zoe", "score": 1, "active": True, "born": date(1990, 1, 2),
       "status": "a", "origin": "crm", "country_id": 1}
PAT = {"email": "p@x", "name": "Pat", "score": 2, "active": False, "born": date(1991, 3, 4),
       "status": "i", "origin": "crm", "country_id": 1}


def _b(email: str, name: str, score: str, active: str, born: str, status: str) -> dict[str, Any]:
    """A row of B; its one-way columns hold values that must never reach A."""
    return {"Email": email, "Name": name, "Score": score, "Active": active, "Born": born,
            "Status": status, "Source": "sheet", "Country": "Peru", "Shout": "NOT A NAME"}


RAE = _b("r1@x", "Rae", "42", "true", "2001-05-06", "Active")
ROB = _b("r2@x", "Rob", "7", "false", "2002-07-08", "Inactive")
PAT_B = _b("p@x", "Pat B", "3", "true", "1991-03-04", "Active")


def pull_sync(operation: str = "sync", **extra: Any) -> dict[str, Any]:
    return {
        "name": "contacts",
        "direction": "pull",
        "source": {"object": "contact"},
        "destination": {"connectorInstanceId": "sheet", "externalResource": "rows",
                        "operation": operation, "matchKey": ["email"], "mapping": MAPPING},
        **extra,
    }


def seed(urls: Urls, a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]]) -> None:
    with engine_for(urls[0]) as engine, engine.begin() as conn:
        CONTACT.metadata.create_all(conn)
        conn.execute(COUNTRIES.insert(), [{"id": 1, "name": "France"}])
        if a_rows:
            conn.execute(CONTACT.insert(), a_rows)
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        ROWS.metadata.create_all(conn)
        if b_rows:
            conn.execute(ROWS.insert(), b_rows)


def a_rows(url: str) -> list[tuple[Any, ...]]:
    with engine_for(url) as engine, engine.connect() as conn:
        stmt = sa.select(*[CONTACT.c[c] for c in A_COLS]).order_by(CONTACT.c.email)
        return [tuple(r) for r in conn.execute(stmt)]


def b_rows(url: str, table: sa.Table = ROWS) -> list[tuple[Any, ...]]:
    with engine_for(url) as engine, engine.connect() as conn:
        stmt = sa.select(table).order_by(next(iter(table.c)))
        return [tuple(r) for r in conn.execute(stmt)]


def _row(email: str, name: str, score: int, active: bool, born: date, status: str,
         origin: str | None = None, country_id: int | None = None) -> tuple[Any, ...]:
    return (email, name, score, active, born, status, origin, country_id)


# What A holds after pulling RAE, ROB and PAT_B: the pulled fields cast back to A's types,
# the map inverted; A's one-way columns (origin, country_id) untouched, and `name` taken from
# Name only (the expression's Shout never flows back into it).
A_PULLED = [
    _row("p@x", "Pat B", 3, True, date(1991, 3, 4), "a", "crm", 1),
    _row("r1@x", "Rae", 42, True, date(2001, 5, 6), "a"),
    _row("r2@x", "Rob", 7, False, date(2002, 7, 8), "i"),
    _row("z@x", "Zoe", 1, True, date(1990, 1, 2), "a", "crm", 1),
]


def test_pull_flows_from_b_to_a_through_the_reversed_mapping(sides: Urls,
                                                             tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync())
    b_before = raw_rows(urls[1], "rows")
    result = sync(proj)
    assert stats(result) == expect(inserted=2, updated=1)
    assert status(result) == "completed" and codes(result) == []
    assert a_rows(urls[0]) == A_PULLED
    got = {r[0]: r for r in a_rows(urls[0])}
    # the casts back produced A's own types, not text that a database happened to accept
    assert type(got["r1@x"][2]) is int and type(got["r1@x"][3]) is bool
    assert type(got["r1@x"][4]) is date
    assert raw_rows(urls[1], "rows") == b_before  # a pull never writes B


def test_pull_rerun_writes_nothing(sides: Urls, tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync())
    sync(proj)
    before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
    again = sync(proj)
    assert stats(again) == expect(skipped=3)
    assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before


def test_pull_carries_later_changes_of_b_only(sides: Urls, tmp_path: Path) -> None:
    """A change in B flows to A; a change in A does not flow to B (and is not undone while B's
    record stays unchanged); a change to a one-way column of B changes nothing."""
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync())
    sync(proj)
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        conn.execute(ROWS.update().where(ROWS.c.Email == "r1@x").values(
            Name="Rae 2", Score="43", Active="false", Status="Inactive"))
        conn.execute(ROWS.update().where(ROWS.c.Email == "r2@x").values(
            Shout="ROB!", Source="elsewhere", Country="Chile"))
    with engine_for(urls[0]) as engine, engine.begin() as conn:
        conn.execute(CONTACT.update().where(CONTACT.c.email == "z@x").values(name="Zoe A"))
    b_before = raw_rows(urls[1], "rows")
    result = sync(proj)
    assert stats(result) == expect(updated=1, skipped=2)
    assert a_rows(urls[0]) == [
        A_PULLED[0],
        _row("r1@x", "Rae 2", 43, False, date(2001, 5, 6), "i"),
        A_PULLED[2],
        _row("z@x", "Zoe A", 1, True, date(1990, 1, 2), "a", "crm", 1),
    ]
    assert raw_rows(urls[1], "rows") == b_before


def test_pull_with_operation_sync_deletes_only_the_records_it_created(sides: Urls,
                                                                     tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync("sync"))
    assert stats(sync(proj)) == expect(inserted=2, updated=1)
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        # r1@x was created in A by the pull; p@x was A's before the pull matched it
        conn.execute(ROWS.delete().where(ROWS.c.Email.in_(["r1@x", "p@x"])))
    result = sync(proj)
    assert stats(result) == expect(deleted=1, skipped=1)
    assert a_rows(urls[0]) == [A_PULLED[0], A_PULLED[2], A_PULLED[3]]
    assert stats(sync(proj)) == expect(skipped=1)
    assert a_rows(urls[0]) == [A_PULLED[0], A_PULLED[2], A_PULLED[3]]


def test_pull_with_operation_upsert_deletes_nothing(sides: Urls, tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync("upsert"))
    sync(proj)
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        conn.execute(ROWS.delete().where(ROWS.c.Email.in_(["r1@x", "p@x"])))
    assert stats(sync(proj)) == expect(skipped=1)
    assert a_rows(urls[0]) == A_PULLED


def _notices(proj: Any) -> list[str]:
    """The notices about fields that flow one way (others, e.g. about keys, left out)."""
    return [p.message for p in proj.notices if "destination.mapping" in p.path]


def test_pull_notices_name_the_one_way_fields(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    proj = make_project(tmp_path, urls, pull_sync())
    found = _notices(proj)
    assert len(found) == len(ONE_WAY), found
    for (i, flow), text in zip(ONE_WAY.items(), found, strict=True):
        assert f"mapping[{i}]" in text and flow in text and "only" in text, text
    assert "constant" in found[0] and "lookup" in found[1] and "expression" in found[2]


def test_a_map_that_is_not_one_to_one_flows_one_way(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    mapping = [{"source": "email", "target": "Email"},
               {"source": "status", "target": "Status",
                "transform": {"type": "map", "mappings": {"a": "On", "b": "On", "i": "Off"}}}]
    sync_ = pull_sync()
    sync_["destination"]["mapping"] = mapping
    found = _notices(make_project(tmp_path, urls, sync_))
    assert len(found) == 1 and "mapping[1]" in found[0] and "one-to-one" in found[0], found


def test_push_from_objectstack_has_no_one_way_notices(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    assert _notices(make_project(tmp_path, urls, pull_sync() | {"direction": "push"})) == []


def test_pull_never_writes_one_way_columns_of_new_records(sides: Urls, tmp_path: Path) -> None:
    """Records the pull creates in A leave A's one-way columns empty (their defaults), even
    though B has values in the columns those fields are written to."""
    urls = sides
    seed(urls, [], [RAE])
    proj = make_project(tmp_path, urls, pull_sync())
    assert stats(sync(proj)) == expect(inserted=1)
    assert a_rows(urls[0]) == [A_PULLED[1]]


# -- direction is relative to ObjectStack ------------------------------------------------------
def _external_to_objectstack(direction: str) -> dict[str, Any]:
    """Source: the external table; destination: the ObjectStack object."""
    return {
        "name": "contacts",
        "direction": direction,
        "source": {"connectorInstanceId": "sheet", "externalResource": "people"},
        "destination": {"object": "contact", "operation": "upsert", "matchKey": ["email"],
                        "mapping": {"Email": "email", "Name": "name"}},
    }


PEOPLE = sa.Table("people", sa.MetaData(),
                  sa.Column("Email", sa.Text, primary_key=True), sa.Column("Name", sa.Text))


def test_push_with_an_objectstack_destination_flows_from_objectstack(sides: Urls,
                                                                     tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [])
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        PEOPLE.create(conn)
        conn.execute(PEOPLE.insert(), [{"Email": "e@x", "Name": "External only"}])
    proj = make_project(tmp_path, urls, _external_to_objectstack("push"))
    said = [p for p in proj.notices if p.path.endswith("direction")]
    assert len(said) == 1, proj.notices
    assert "from the ObjectStack endpoint (destination)" in said[0].message
    a_before = raw_rows(urls[0], "contact")
    result = sync(proj)
    assert stats(result) == expect(inserted=2)
    assert b_rows(urls[1], PEOPLE) == [("e@x", "External only"), ("p@x", "Pat"), ("z@x", "Zoe")]
    assert raw_rows(urls[0], "contact") == a_before  # nothing flowed into ObjectStack
    assert stats(sync(proj)) == expect(skipped=2)


def test_pull_with_an_objectstack_destination_flows_into_objectstack(sides: Urls,
                                                                     tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE], [])
    with engine_for(urls[1]) as engine, engine.begin() as conn:
        PEOPLE.create(conn)
        conn.execute(PEOPLE.insert(), [{"Email": "e@x", "Name": "External"}])
    proj = make_project(tmp_path, urls, _external_to_objectstack("pull"))
    assert [p for p in proj.notices if p.path.endswith("direction")] == []
    people_before = raw_rows(urls[1], "people")
    assert stats(sync(proj)) == expect(inserted=1)
    with engine_for(urls[0]) as engine, engine.connect() as conn:
        got = conn.execute(sa.select(CONTACT.c.email, CONTACT.c.name).order_by(
            CONTACT.c.email)).all()
    assert [tuple(r) for r in got] == [("e@x", "External"), ("z@x", "Zoe")]
    assert raw_rows(urls[1], "people") == people_before
    assert stats(sync(proj)) == expect(skipped=1)


def test_plan_of_a_pull_counts_and_writes_nothing(sides: Urls, tmp_path: Path) -> None:
    urls = sides
    seed(urls, [ZOE, PAT], [RAE, ROB, PAT_B])
    proj = make_project(tmp_path, urls, pull_sync())
    before = raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")
    planned = plan(proj, "contacts")
    assert planned.stats == expect(inserted=2, updated=1)
    assert (raw_rows(urls[0], "contact"), raw_rows(urls[1], "rows")) == before
    assert stats(sync(proj)) == expect(inserted=2, updated=1)
