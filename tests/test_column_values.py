"""Values that used to change on their way through a SQL-to-SQL sync, found by the bench's
table of every type: PostgreSQL intervals with months, and JSON columns of SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run

from engine_helpers import counts, create_table, project, to_warehouse

INTERVALS = ["1 year 2 mons 3 days 04:05:06", "5 mons 7 days", "-1 mons +2 days", "00:00:01.5",
             "3 days", None]


def test_intervals_with_months_reach_postgresql_unchanged(
        tmp_path: Path, pg_url: str, pg_url_2: str) -> None:
    create_table(pg_url, "terms", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("term", sa.Interval)])
    with sa.create_engine(pg_url).begin() as conn:
        for i, text in enumerate(INTERVALS, 1):
            conn.execute(sa.text("INSERT INTO terms VALUES (:i, CAST(:t AS interval))"),
                         {"i": i, "t": text})
    proj = project(tmp_path, (pg_url, pg_url_2), to_warehouse(
        "terms", "terms", "terms", mapping={"id": "id", "term": "term"}, matchKey=["id"]))
    assert counts(run(proj, "terms")) == {"processed": 6, "inserted": 6}
    query = "SELECT CAST(term AS text) FROM terms ORDER BY id"
    with sa.create_engine(pg_url).connect() as a, sa.create_engine(pg_url_2).connect() as b:
        assert [r[0] for r in b.execute(sa.text(query))] == [
            r[0] for r in a.execute(sa.text(query))]
        assert b.execute(sa.text("SELECT data_type FROM information_schema.columns WHERE "
                                 "table_name = 'terms' AND column_name = 'term'")
                         ).scalar() == "interval"
    assert counts(run(proj, "terms")) == {"processed": 6, "skipped": 6}
    assert counts(run(proj, "terms", full_refresh=True)) == {"processed": 6, "skipped": 6}
    dispose_engines()


def test_a_json_column_of_sqlite_keeps_its_json_text(tmp_path: Path) -> None:
    source, warehouse = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/wh.db"
    with sa.create_engine(source).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, attrs JSON)")
        conn.exec_driver_sql("""INSERT INTO docs VALUES (1, '{"plan": "pro", "seats": 3}'),
                                (2, '[1, 2]'), (3, NULL), (4, '"text"')""")
    proj = project(tmp_path, (source, warehouse), to_warehouse(
        "docs", "docs", "docs", mapping={"id": "id", "attrs": "attrs"}, matchKey=["id"]))
    assert counts(run(proj, "docs")) == {"processed": 4, "inserted": 4}
    with sa.create_engine(warehouse).connect() as conn:
        held = [r[0] for r in conn.exec_driver_sql("SELECT attrs FROM docs ORDER BY id")]
    assert held == ['{"plan": "pro", "seats": 3}', "[1, 2]", None, '"text"']
    assert counts(run(proj, "docs")) == {"processed": 4, "skipped": 4}
    dispose_engines()


# (a document that is a number alone is stored as a number: the JSON column's affinity)
ODD_DOCUMENTS = [' {"padded": true} ', '{"é": "ü😀", "nested": {"b": [1, 2.5, null]}}',
                 "[1e300, -0.0, 12345678901234567890123]", '"\\u0000\\n\\t"', '{"k": NaN}',
                 "[Infinity, -Infinity]", '{"b":1,"a":2}', "[]", "false"]


def test_sqlite_json_documents_are_written_as_sqlalchemy_binds_them(tmp_path: Path) -> None:
    """A first load writes a page of JSON documents in bulk (no change log: the Arrow lane)
    with the text SQLAlchemy's JSON type binds for each (`json.dumps` of the decoded
    document), whatever the source's spacing."""
    source, warehouse = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/wh.db"
    with sa.create_engine(source).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, attrs JSON)")
        for i, text in enumerate(ODD_DOCUMENTS, 1):
            conn.exec_driver_sql("INSERT INTO docs VALUES (?, ?)", (i, text))
    proj = project(tmp_path, (source, warehouse), to_warehouse(
        "docs", "docs", "docs", mapping={"id": "id", "attrs": "attrs"}, matchKey=["id"],
        audit=None))
    assert counts(run(proj, "docs")) == {"processed": 9, "inserted": 9}
    with sa.create_engine(warehouse).connect() as conn:
        held = [r[0] for r in conn.exec_driver_sql("SELECT attrs FROM docs ORDER BY id")]
    assert held == [' {"padded": true} '.strip(),
                    '{"\\u00e9": "\\u00fc\\ud83d\\ude00", "nested": {"b": [1, 2.5, null]}}',
                    "[1e+300, -0.0, 12345678901234567890123]", '"\\u0000\\n\\t"',
                    '{"k": NaN}', "[Infinity, -Infinity]", '{"b": 1, "a": 2}', "[]", "false"]
    assert held == [json.dumps(json.loads(text)) for text in ODD_DOCUMENTS]
    assert counts(run(proj, "docs")) == {"processed": 9, "skipped": 9}
    dispose_engines()


def test_intervals_into_sqlite_are_their_postgresql_text(tmp_path: Path, pg_url: str) -> None:
    create_table(pg_url, "terms", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("term", sa.Interval)])
    with sa.create_engine(pg_url).begin() as conn:
        conn.execute(sa.text("INSERT INTO terms VALUES (1, '1 year 2 mons'), (2, NULL)"))
    warehouse = f"sqlite:///{tmp_path}/wh.db"
    proj = project(tmp_path, (pg_url, warehouse), to_warehouse(
        "terms", "terms", "terms", mapping={"id": "id", "term": "term"}, matchKey=["id"]))
    assert counts(run(proj, "terms")) == {"processed": 2, "inserted": 2}
    with sa.create_engine(warehouse).connect() as conn:
        assert [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM terms ORDER BY id")] == [
            (1, "1 year 2 mons"), (2, None)]
    assert counts(run(proj, "terms")) == {"processed": 2, "skipped": 2}
    dispose_engines()
