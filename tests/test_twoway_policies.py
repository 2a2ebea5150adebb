"""A bidirectional sync applies `validation`, `errorHandling` and `retry` exactly as a push
of the same config does: same status, counts, error codes and destination rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import load_project
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run

from contract_peers import SqlPeer
from engine_helpers import counts, create_table, errors, status

FIELDS = ("email", "first_name", "score")


def seed(root: Path) -> None:
    create_table(f"sqlite:///{root}/objectstack.db", "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("first_name", sa.Text),
        sa.Column("score", sa.Integer),
    ], [{"id": i, "email": f"p{i}@x.io", "first_name": None if i == 3 else f"n{i}",
         "score": -1 if i == 4 else i} for i in range(1, 7)])


def outcome(root: Path, direction: str, *, refuse: bool = False, faults: int = 0,
            **sync: Any) -> tuple[Any, list[dict[str, Any]], list[float]]:
    """Run the sync once in a fresh folder; (result, destination rows, retry waits)."""
    root.mkdir()
    seed(root)
    peer = SqlPeer("sqlite", f"sqlite:///{root}/wh.db")
    peer.create("people", {"email": "text", "first_name": "text", "score": "integer"},
                ["email"], refuse_negative="score" if refuse else None)
    config = {"name": "people", "direction": direction, "batchSize": 10,
              "source": {"object": "person"},
              "destination": {"connectorInstanceId": "wh", "externalResource": "people",
                              "operation": "upsert", "matchKey": ["email"],
                              "mapping": {f: f for f in FIELDS}}, **sync}
    (root / "p.yaml").write_text(yaml.safe_dump({
        "objectstack": {"url": f"sqlite:///{root}/objectstack.db"},
        "connectors": {"wh": {"type": "sql", "url": peer.url}}, "syncs": [config]}))
    sleeps: list[float] = []
    with peer.faults(faults):
        result = run(load_project(root / "p.yaml", env={}), "people", sleep=sleeps.append)
    rows = peer.rows("people", FIELDS)
    dispose_engines()
    return result, rows, sleeps


def assert_same(tmp_path: Path, **sync: Any) -> tuple[Any, list[dict[str, Any]]]:
    push, push_rows, push_sleeps = outcome(tmp_path / "push", "push", **sync)
    both, both_rows, both_sleeps = outcome(tmp_path / "both", "bidirectional", **sync)
    assert status(both) == status(push)
    assert counts(both) == counts(push)
    assert sorted((str(e.get("recordId")), e.get("code")) for e in errors(both)) == \
        sorted((str(e.get("recordId")), e.get("code")) for e in errors(push))
    assert both_rows == push_rows
    assert both_sleeps == push_sleeps
    return both, both_rows


REQUIRED = {"validation": {"required": ["first_name"]}}


def test_on_validation_error_skip_leaves_the_invalid_record_out(tmp_path: Path) -> None:
    result, rows = assert_same(tmp_path, **REQUIRED,
                               errorHandling={"onValidationError": "skip"})
    assert counts(result) == {"processed": 6, "inserted": 5, "errored": 1}
    assert [r["email"] for r in rows] == ["p1@x.io", "p2@x.io", "p4@x.io", "p5@x.io",
                                          "p6@x.io"]


def test_on_validation_error_fail_stops_before_writing_the_batch(tmp_path: Path) -> None:
    result, rows = assert_same(tmp_path, **REQUIRED,
                               errorHandling={"onValidationError": "fail"})
    assert status(result) == "failed"
    assert rows == []


def test_on_validation_error_log_reports_and_writes(tmp_path: Path) -> None:
    result, rows = assert_same(tmp_path, **REQUIRED, errorHandling={"onValidationError": "log"})
    assert [e["code"] for e in errors(result)] == ["REQUIRED"]
    assert len(rows) == 6 and rows[2] == {"email": "p3@x.io", "first_name": None, "score": 3}


def test_a_custom_rule_is_applied_the_same(tmp_path: Path) -> None:
    rule = {"validation": {"custom": [{"name": "positive", "condition": "score >= 0",
                                       "message": "score must not be negative"}]}}
    result, _ = assert_same(tmp_path, **rule, errorHandling={"onValidationError": "skip"})
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("4", "VALIDATION")]


def test_on_sync_error_skip_writes_the_records_the_destination_takes(tmp_path: Path) -> None:
    result, rows = assert_same(tmp_path, refuse=True, errorHandling={"onSyncError": "skip"})
    assert counts(result) == {"processed": 6, "inserted": 5, "errored": 1}
    assert [e["code"] for e in errors(result)] == ["WRITE_ERROR"]
    assert "p4@x.io" not in [r["email"] for r in rows]


@pytest.mark.parametrize("policy", ["fail", "retry"])
def test_on_sync_error_fail_and_retry_fail_the_run(tmp_path: Path, policy: str) -> None:
    result, rows = assert_same(tmp_path, refuse=True, errorHandling={"onSyncError": policy},
                               retry={"maxAttempts": 2, "backoffMs": 5})
    assert status(result) == "failed"
    assert rows == []


def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    result, rows = assert_same(tmp_path, faults=2, retry={"maxAttempts": 3, "backoffMs": 40})
    assert status(result) == "completed"
    assert len(rows) == 6


def test_the_change_log_records_writes_to_both_sides(tmp_path: Path) -> None:
    root = tmp_path / "both"
    first, _, _ = outcome(root, "bidirectional", audit={})
    assert counts(first) == {"processed": 6, "inserted": 6}
    SqlPeer("sqlite", f"sqlite:///{root}/wh.db").change(
        "people", {"email": "p2@x.io"}, {"first_name": "two"})
    result = run(load_project(root / "p.yaml", env={}), "people")
    assert counts(result) == {"processed": 6, "updated": 1, "skipped": 5}
    with sa.create_engine(f"sqlite:///{root}/wh.db").connect() as conn:
        log = [tuple(r) for r in conn.execute(sa.text(
            "SELECT operation, record_key, before, after FROM _sync_assets_changes "
            "ORDER BY id"))]
    assert [(op, key) for op, key, _, _ in log] == [
        *[("insert", f'["p{i}@x.io"]') for i in range(1, 7)],
        ("source_update", '["p2@x.io"]'),
    ]
    _, _, before, after = log[-1]
    assert json.loads(before) == {"email": "p2@x.io", "first_name": "n2", "score": 2}
    assert json.loads(after) == {"email": "p2@x.io", "first_name": "two", "score": 2}


def pull_project(root: Path, **sync: Any) -> Any:
    """External `people` (3 rows, p2 without a first name) pulled into the ObjectStack
    object `person` (empty, ids its own)."""
    root.mkdir()
    create_table(f"sqlite:///{root}/objectstack.db", "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.Text, unique=True), sa.Column("first_name", sa.Text),
        sa.Column("score", sa.Integer)])
    peer = SqlPeer("sqlite", f"sqlite:///{root}/wh.db")
    peer.create("people", {"email": "text", "first_name": "text", "score": "integer"},
                ["email"], [{"email": f"p{i}@x.io", "first_name": None if i == 2 else f"n{i}",
                             "score": i} for i in (1, 2, 3)])
    config = {"name": "people", "direction": "pull", "source": {"object": "person"},
              "destination": {"connectorInstanceId": "wh", "externalResource": "people",
                              "operation": "upsert", "matchKey": ["email"],
                              "mapping": {f: f for f in FIELDS}}, **sync}
    (root / "p.yaml").write_text(yaml.safe_dump({
        "objectstack": {"url": f"sqlite:///{root}/objectstack.db"},
        "connectors": {"wh": {"type": "sql", "url": peer.url}}, "syncs": [config]}))
    return load_project(root / "p.yaml", env={})


def pulled(root: Path) -> list[str]:
    with sa.create_engine(f"sqlite:///{root}/objectstack.db").connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT email FROM person ORDER BY email"))]


def test_a_pull_applies_validation_to_what_it_writes(tmp_path: Path) -> None:
    proj = pull_project(tmp_path / "skip", **REQUIRED,
                        errorHandling={"onValidationError": "skip"})
    result = run(proj, "people")
    assert counts(result) == {"processed": 3, "inserted": 2, "errored": 1}
    assert [(e["recordId"], e["code"]) for e in errors(result)] == [("p2@x.io", "REQUIRED")]
    assert pulled(tmp_path / "skip") == ["p1@x.io", "p3@x.io"]


def test_a_pull_fails_on_an_invalid_record_when_told_to(tmp_path: Path) -> None:
    proj = pull_project(tmp_path / "fail", **REQUIRED,
                        errorHandling={"onValidationError": "fail"})
    assert status(run(proj, "people")) == "failed"
    assert pulled(tmp_path / "fail") == []


def test_a_pulls_realtime_token_watches_the_side_it_reads(tmp_path: Path) -> None:
    from sync_assets.engine.observe import change_token

    proj = pull_project(tmp_path / "p")
    before = change_token(proj, "people")
    with sa.create_engine(f"sqlite:///{tmp_path}/p/objectstack.db").begin() as conn:
        conn.execute(sa.text("INSERT INTO person (email) VALUES ('written@x.io')"))
    assert change_token(proj, "people") == before  # the side it writes: no run needed
    with sa.create_engine(f"sqlite:///{tmp_path}/p/wh.db").begin() as conn:
        conn.execute(sa.text("INSERT INTO people (email) VALUES ('p9@x.io')"))
    assert change_token(proj, "people") != before
