"""The Google Sheets connector (`type: google_sheets`) against the validating fake of the Sheets
API and of Google's token endpoint (tests/fake_sheets.py): settings and their load-time
errors, describe, reads, the write calls and how full they are, refusals, token refresh, 429s
with Retry-After, writes of unknown outcome, SIGKILLs at random points, and no secret in any
output. The contract suite runs it too (tests/peer_google_sheets.py)."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import load_project
from sync_assets.connectors.base import ConnectorError, ReadRequest
from sync_assets.connectors.google_sheets.connector import SheetsTab, cell, open_tab
from sync_assets.connectors.google_sheets.settings import GoogleSheetsSettings
from sync_assets.connectors.sql import dispose_engines
from sync_assets.engine import run
from sync_assets.spec.errors import SyncConfigError
from sync_assets.state import StateStore

from engine_helpers import counts, create_table, errors, status
from fake_sheets import FakeSheets, ServiceAccount
from kill_helpers import Pace, kill_one_run

SID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
HEADER = ["email", "name", "score", "updated_at"]
BASE = datetime(2024, 1, 1, 8, 0, 0)
WORKER = Path(__file__).with_name("objectstack_crash_worker.py")


@pytest.fixture
def fake() -> Iterator[FakeSheets]:
    with FakeSheets() as found:
        found.add_spreadsheet(SID)
        yield found
        found.assert_clean()


def person(i: int, **values: Any) -> dict[str, Any]:
    return {"id": i, "email": f"user{i}@example.org", "name": f"Name {i}", "score": i % 97,
            "updated_at": BASE + timedelta(seconds=i), **values}


def seed(tmp_path: Path, n: int) -> str:
    url = f"sqlite:///{tmp_path}/src.db"
    create_table(url, "people", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text), sa.Column("name", sa.Text),
        sa.Column("score", sa.Integer), sa.Column("updated_at", sa.DateTime),
    ], [person(i) for i in range(1, n + 1)])
    return url


def change_source(url: str, ids: list[int], **values: Any) -> None:
    engine = sa.create_engine(url)
    people = sa.table("people", sa.column("id"), *[sa.column(k) for k in values])
    with engine.begin() as conn:
        conn.execute(sa.update(people).where(people.c.id.in_(ids)).values(**values))
    engine.dispose()


def delete_source(url: str, ids: list[int]) -> None:
    engine = sa.create_engine(url)
    people = sa.table("people", sa.column("id"))
    with engine.begin() as conn:
        conn.execute(sa.delete(people).where(people.c.id.in_(ids)))
    engine.dispose()


def write_project(tmp_path: Path, sheet: dict[str, Any], batch: int = 100,
                  **sync: Any) -> Path:
    dest = {"connectorInstanceId": "sheet", "externalResource": "People",
            "operation": "upsert", "matchKey": ["email"],
            "mapping": {f: f for f in HEADER}}
    dest.update(sync.pop("destination", {}))
    config = {"name": "to_sheet",
              "source": {"connectorInstanceId": "src", "externalResource": "people"},
              "destination": dest, "batchSize": batch, **sync}
    data = {"objectstack": {"url": f"sqlite:///{tmp_path}/objectstack.db"},
            "connectors": {"src": {"type": "sql", "url": f"sqlite:///{tmp_path}/src.db"},
                           "sheet": sheet},
            "syncs": [config]}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def project(tmp_path: Path, sheet: dict[str, Any], batch: int = 100, **sync: Any) -> Any:
    return load_project(write_project(tmp_path, sheet, batch, **sync), env={})


def sync(proj: Any, **options: Any) -> Any:
    options.setdefault("sleep", lambda _s: None)
    return run(proj, "to_sheet", **options)


def held(fake: FakeSheets, title: str = "People") -> list[dict[str, Any]]:
    return sorted(fake.records(SID, title), key=lambda r: r["email"])


def expected(ids: Any, changed: dict[int, dict[str, Any]] | None = None
             ) -> list[dict[str, Any]]:
    """The sheet's records for these source ids, as cells hold them (some values changed)."""
    out = []
    for i in ids:
        row = {k: cell(v) for k, v in person(i).items() if k in HEADER}
        row.update((changed or {}).get(i, {}))
        out.append(row)
    return sorted(out, key=lambda r: r["email"])


def people_tab(fake: FakeSheets, ids: Any = ()) -> None:
    fake.add_tab(SID, "People", HEADER, [[cell(person(i)[h]) for h in HEADER] for i in ids])


def api_calls(result: Any) -> int:
    """The API calls the run's logs report for the sheet ("sheet.People: N API calls")."""
    (line,) = [m for m in result.to_spec()["logs"] if "sheet.People: " in m
               and m.endswith((" API call", " API calls"))]
    return int(line.split("sheet.People: ")[1].split()[0])


def calls_to(fake: FakeSheets, suffix: str) -> list[Any]:
    return [c for c in fake.api.calls if c.path.endswith(suffix) and c.status < 300]


def opened(fake: FakeSheets, **extra: Any) -> SheetsTab:
    settings = GoogleSheetsSettings.model_validate(fake.settings(SID, **extra))
    return open_tab(settings, "People", "sheet.People")


# -- settings -----------------------------------------------------------------------------------
def test_a_key_that_is_no_service_account_key_fails_the_load_naming_the_field(
        tmp_path: Path, fake: FakeSheets) -> None:
    key = json.loads(fake.key_json())
    key["type"] = "authorized_user"
    secret = key["private_key"].splitlines()[1]
    path = write_project(tmp_path, fake.settings(SID, serviceAccountKey="${SHEETS_KEY}"))
    with pytest.raises(SyncConfigError) as failed:
        load_project(path, env={"SHEETS_KEY": json.dumps(key)})
    text = str(failed.value)
    assert "serviceAccountKey" in text and "service_account" in text
    assert secret not in text and key["private_key_id"] not in text


def test_a_key_file_that_does_not_exist_fails_the_load(tmp_path: Path,
                                                        fake: FakeSheets) -> None:
    path = write_project(tmp_path, fake.settings(SID, serviceAccountKey=str(
        tmp_path / "missing.json")))
    with pytest.raises(SyncConfigError) as failed:
        load_project(path, env={})
    assert "serviceAccountKey" in str(failed.value) and "names no file" in str(failed.value)


def test_a_spreadsheet_url_instead_of_its_id_fails_the_load(tmp_path: Path,
                                                             fake: FakeSheets) -> None:
    path = write_project(tmp_path, {**fake.settings(SID), "spreadsheetId":
                                    f"https://docs.google.com/spreadsheets/d/{SID}/edit"})
    with pytest.raises(SyncConfigError) as failed:
        load_project(path, env={})
    assert "spreadsheetId" in str(failed.value)


def test_insert_without_a_match_key_is_a_load_time_error(tmp_path: Path,
                                                         fake: FakeSheets) -> None:
    # an append cannot be exactly once: the sheet keeps no sync state of its own
    path = write_project(tmp_path, fake.settings(SID),
                         destination={"operation": "insert", "matchKey": []})
    with pytest.raises(SyncConfigError) as failed:
        load_project(path, env={})
    assert "matchKey" in str(failed.value)


def test_the_key_comes_from_an_environment_variable_or_a_file(
        tmp_path: Path, fake: FakeSheets) -> None:
    seed(tmp_path, 3)
    people_tab(fake)
    key_file = tmp_path / "sa.json"
    key_file.write_text(fake.key_json())
    by_env = write_project(tmp_path, fake.settings(SID, serviceAccountKey="${SHEETS_KEY}"))
    assert counts(sync(load_project(by_env, env={"SHEETS_KEY": fake.key_json()}))) == {
        "processed": 3, "inserted": 3}
    by_file = project(tmp_path, fake.settings(SID, serviceAccountKey=str(key_file)))
    assert counts(sync(by_file)) == {"processed": 3, "skipped": 3}
    assert held(fake) == expected(range(1, 4))


# -- describe and read ------------------------------------------------------------------------
def test_fields_come_from_the_header_and_kinds_from_the_values_or_the_settings(
        fake: FakeSheets) -> None:
    fake.add_tab(SID, "People", ["email", "score", "ratio", "vip", "seen", "born", "zip"], [
        ["a@x.io", 3, 0.5, True, "2024-01-01T10:00:00", "1990-05-01", 12345],
        ["b@x.io", 4, 2, False, "2024-01-02T11:30:00", "1991-06-02", 54321]])
    desc = opened(fake, columns={"zip": "text"}, key="email").describe()
    assert {n: f.kind for n, f in desc.fields.items()} == {
        "email": "text", "score": "integer", "ratio": "float", "vip": "boolean",
        "seen": "datetime", "born": "date", "zip": "text"}
    assert desc.primary_key == ("email",) and not desc.fields["email"].nullable


def test_a_tab_is_read_in_one_unformatted_batch_get_and_typed(fake: FakeSheets) -> None:
    fake.add_tab(SID, "People", HEADER, [
        ["a@x.io", "A", 3, "2024-01-01T10:00:00"], [], ["b@x.io", "", 4, "2024-01-01T09:00:00"]])
    tab = opened(fake, orderedReads=True)
    request = ReadRequest(columns=["email", "name", "score"], order_by=["updated_at", "email"],
                          batch_size=10, cursor_field="updated_at")
    assert list(tab.read_batches(request)) == [[
        {"email": "b@x.io", "name": None, "score": 4,
         "__sync_cursor__": datetime(2024, 1, 1, 9, 0)},
        {"email": "a@x.io", "name": "A", "score": 3,
         "__sync_cursor__": datetime(2024, 1, 1, 10, 0)}]]
    (read,) = calls_to(fake, "values:batchGet")
    assert read.query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert read.query["ranges"] == ["'People'"]
    assert tab.usage().calls == 3  # the token, the tabs, the values


def test_a_missing_tab_is_created_with_the_mapped_fields_as_its_header(
        tmp_path: Path, fake: FakeSheets) -> None:
    seed(tmp_path, 4)
    assert counts(sync(project(tmp_path, fake.settings(SID)))) == {"processed": 4,
                                                                   "inserted": 4}
    assert fake.tab(SID, "People").rows[0] == HEADER
    assert held(fake) == expected(range(1, 5))


def test_a_tab_title_with_spaces_and_quotes_is_quoted_in_every_range(fake: FakeSheets) -> None:
    fake.add_tab(SID, "Bob's list", ["email", "name"], [["a@x.io", "A"]])
    settings = GoogleSheetsSettings.model_validate(fake.settings(SID))
    tab = open_tab(settings, "Bob's list", "sheet.list")
    tab.write(None, "insert", ["email"], [{"email": "b@x.io", "name": "B"}])
    tab.write(None, "update", ["email"], [{"email": "a@x.io", "name": "AA"}])
    assert fake.records(SID, "Bob's list") == [{"email": "a@x.io", "name": "AA"},
                                               {"email": "b@x.io", "name": "B"}]
    (update,) = calls_to(fake, "values:batchUpdate")
    assert update.body["data"][0]["range"] == "'Bob''s list'!A2:B2"
    assert calls_to(fake, ":append")[0].path.endswith("/values/'Bob''s list'!A:B:append")


# -- write calls ----------------------------------------------------------------------------------
def test_a_full_load_appends_full_batches_and_a_rerun_writes_nothing(
        tmp_path: Path, fake: FakeSheets, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tmp_path, 5000)
    people_tab(fake)
    proj = project(tmp_path, fake.settings(SID, maxBatchRows=1000), batch=1000)
    first = sync(proj)
    assert counts(first) == {"processed": 5000, "inserted": 5000}
    appends = calls_to(fake, ":append")
    rows_per_call = [len(c.body["values"]) for c in appends]
    assert rows_per_call == [1000] * 5
    use = sum(rows_per_call) / len(rows_per_call) / 1000
    assert use >= 0.9
    calls = api_calls(first)
    # the token, the tabs, the values once, five appends: 1.6 calls per 1,000 records
    assert calls == 8
    with capsys.disabled():
        print(f"\nfull load of 5,000 records: {len(appends)} appends, {use:.0%} of "
              f"{1000} rows per call, {calls} API calls ({calls / 5:.1f} per 1,000 records)")
    assert held(fake) == expected(range(1, 5001))
    writes_before = len(fake.write_calls())
    again = sync(proj)
    assert counts(again) == {"processed": 5000, "skipped": 5000}
    assert len(fake.write_calls()) == writes_before  # no write call at all
    assert api_calls(again) == 3  # the token, the tabs, the values


def test_updates_are_one_values_batch_update_of_the_written_columns(
        tmp_path: Path, fake: FakeSheets) -> None:
    src = seed(tmp_path, 40)
    people_tab(fake, range(1, 41))
    proj = project(tmp_path, fake.settings(SID), batch=100,
                   destination={"mapping": {"email": "email", "name": "name"}})
    assert counts(sync(proj)) == {"processed": 40, "skipped": 40}
    change_source(src, [3, 17, 18, 40], name="renamed")
    assert counts(sync(proj)) == {"processed": 40, "updated": 4, "skipped": 36}
    (update,) = calls_to(fake, "values:batchUpdate")
    # rows 2.. hold records 1..: record 3 is on row 4; only email and name are written
    assert [d["range"] for d in update.body["data"]] == [
        "'People'!A4:B4", "'People'!A18:B18", "'People'!A19:B19", "'People'!A41:B41"]
    assert update.body["valueInputOption"] == "RAW"
    renamed = {i: {"name": "renamed"} for i in (3, 17, 18, 40)}
    assert held(fake) == expected(range(1, 41), renamed)
    assert fake.api.count("POST") == 1


def test_mirrored_deletes_are_one_batch_update_deleting_rows_bottom_up(
        tmp_path: Path, fake: FakeSheets) -> None:
    src = seed(tmp_path, 30)
    people_tab(fake)
    proj = project(tmp_path, fake.settings(SID), syncMode="full",
                   destination={"operation": "sync"})
    assert counts(sync(proj)) == {"processed": 30, "inserted": 30}
    gone = [2, 3, 4, 10, 29]
    delete_source(src, gone)
    assert counts(sync(proj)) == {"processed": 30, "deleted": 5, "skipped": 25}
    (deleting,) = calls_to(fake, ":batchUpdate")
    spans = [(r["deleteDimension"]["range"]["startIndex"],
              r["deleteDimension"]["range"]["endIndex"]) for r in deleting.body["requests"]]
    assert spans == [(29, 30), (10, 11), (2, 5)]  # highest rows first, adjacent ones merged
    assert held(fake) == expected([i for i in range(1, 31) if i not in gone])


def test_refused_rows_are_errored_with_the_api_status_and_message(
        tmp_path: Path, fake: FakeSheets) -> None:
    src = seed(tmp_path, 8)
    change_source(src, [3, 6], score=-5)
    tab = fake.add_tab(SID, "People", HEADER)
    tab.at_least[2] = (0.0, 1)  # a strict rule: score at least 0, below the header
    proj = project(tmp_path, fake.settings(SID), errorHandling={"onSyncError": "skip"})
    result = sync(proj)
    assert status(result) == "partial"
    assert counts(result) == {"processed": 8, "inserted": 6, "errored": 2}
    found = errors(result)
    assert [e["recordId"] for e in found] == ["3", "6"]
    assert all("INVALID_ARGUMENT" in e["message"] and "data validation rule" in e["message"]
               for e in found)
    assert held(fake) == expected([1, 2, 4, 5, 7, 8])
    # the halves of a refused append are sent again until the refused rows are alone
    assert len(calls_to(fake, ":append")) == 4


def test_a_write_whose_answer_was_lost_is_not_sent_again_and_not_doubled(
        tmp_path: Path, fake: FakeSheets) -> None:
    seed(tmp_path, 20)
    people_tab(fake, range(1, 6))
    fake.fail_writes(1, applied=True)  # the append lands, its answer is a 500
    proj = project(tmp_path, fake.settings(SID), retry={"maxAttempts": 3, "backoffMs": 0})
    result = sync(proj)
    assert status(result) == "completed"
    # the 15 appended rows are found by the retry as they should be: counted as skipped,
    # since the engine cannot know its lost call wrote them
    assert counts(result) == {"processed": 20, "skipped": 20}
    assert held(fake) == expected(range(1, 21))
    appends = [c for c in fake.api.calls if c.path.endswith(":append")]
    assert [c.status for c in appends] == [500]  # the retry found the rows: no second append
    assert len(calls_to(fake, "values:batchGet")) == 2  # the tab read again after the 500


# -- tokens and rate limits -----------------------------------------------------------------------
def test_a_token_expiring_mid_run_is_fetched_again(tmp_path: Path, fake: FakeSheets) -> None:
    seed(tmp_path, 30)
    people_tab(fake)
    proj = project(tmp_path, fake.settings(SID), batch=10)
    result = sync(proj, progress=lambda _p: fake.expire_tokens())
    assert counts(result) == {"processed": 30, "inserted": 30}
    assert held(fake) == expected(range(1, 31))
    token_calls = [c for c in fake.tokens.calls if c.path == "/token"]
    assert len(token_calls) == 3  # the first, and one after each of two expiries mid-run
    assert [c.status for c in fake.api.calls].count(401) == 2
    assert [c.status for c in token_calls] == [200, 200, 200]  # each a valid signed JWT


def test_under_429s_to_a_third_of_calls_every_record_is_written_once_waiting_retry_after(
        tmp_path: Path, fake: FakeSheets) -> None:
    src = seed(tmp_path, 300)
    people_tab(fake)
    proj = project(tmp_path, fake.settings(SID), batch=50)
    fake.api.rate_limit(every=3, retry_after=0.2)
    first = sync(proj)
    change_source(src, list(range(1, 301, 7)), name="changed")
    second = sync(proj)
    fake.api.rate_limit(0)
    assert status(first) == status(second) == "completed"
    assert counts(first) == {"processed": 300, "inserted": 300}
    assert counts(second) == {"processed": 300, "updated": 43, "skipped": 257}
    assert held(fake) == expected(range(1, 301), {i: {"name": "changed"}
                                                  for i in range(1, 301, 7)})
    timeline = fake.api.timeline
    limited = [i for i, (_, _, code) in enumerate(timeline) if code == 429]
    assert len(limited) == len(timeline) // 3
    for i in limited:  # each retry came at least the Retry-After later
        assert timeline[i + 1][0] - timeline[i][0] >= 0.2 - 0.01, timeline[i:i + 2]
    logs = second.to_spec()["logs"]
    assert any("waited" in m and "Retry-After" in m for m in logs), logs


def test_a_read_answered_503_is_tried_again_by_the_client_itself(fake: FakeSheets) -> None:
    people_tab(fake, [1, 2])
    fake.api.fail_next(2, 503, body={"error": {"code": 503, "message": "The service is "
                                               "currently unavailable.", "status": "UNAVAILABLE"}})
    tab = opened(fake)
    waits: list[float] = []
    tab.client.sleep = waits.append
    assert tab.count() == 2
    assert [c.status for c in fake.api.calls] == [503, 503, 200, 200]
    assert waits == [1.0, 2.0]  # no Retry-After: Google's truncated exponential backoff
    assert tab.usage().calls == 5  # the token, two failed calls and the two that answered


def test_calls_are_paced_to_the_requests_per_minute_setting(fake: FakeSheets) -> None:
    people_tab(fake)
    tab = opened(fake, requestsPerMinute=300)  # one call each 0.2 s
    tab.describe()
    for i in range(1, 4):
        tab.write(None, "insert", ["email"], [{"email": f"p{i}@x.io", "name": f"P{i}"}])
    arrivals = [at for at, _, _ in fake.api.timeline]
    assert len(arrivals) == 5  # the tabs, the values, three appends
    # paced from when each call starts: the first one also fetched the token before it left
    assert all(b - a >= 0.2 - 0.01 for a, b in itertools.pairwise(arrivals[1:])), arrivals
    assert arrivals[-1] - arrivals[0] >= 3 * 0.2
    assert tab.capabilities.rate_limit == 5.0


def test_the_token_endpoint_refuses_an_assertion_signed_by_another_key(
        fake: FakeSheets) -> None:
    people_tab(fake)
    other = ServiceAccount.generate()
    settings = GoogleSheetsSettings.model_validate(
        {**fake.settings(SID), "serviceAccountKey": other.key_json(fake.token_uri)})
    tab = open_tab(settings, "People", "sheet.People")
    with pytest.raises(ConnectorError) as failed:
        tab.describe()
    assert str(failed.value) == (
        "sheet.People: reading the spreadsheet's tabs: the service account's token could not "
        "be had: RefreshError: ('invalid_grant: Invalid JWT', {'error': 'invalid_grant', "
        "'error_description': 'Invalid JWT'})")
    assert fake.tokens.violations == [
        f"the assertion's header is {{'typ': 'JWT', 'alg': 'RS256', 'kid': "
        f"'{other.private_key_id}'}}",
        "the assertion is no JWT of the service account: Signature verification failed"]
    fake.tokens.violations.clear()  # the refusal was the point
    assert fake.api.calls == []  # no API call went out without a token


# -- exactly once under SIGKILL ----------------------------------------------------------------
KILL_ROWS = 5000
KILLS = 20
KILL_BATCH = 250


def test_sigkill_at_20_random_points_of_a_5000_record_upsert_leaves_each_record_once(
        tmp_path: Path, fake: FakeSheets) -> None:
    rng = Random("sheets-crash")
    src = seed(tmp_path, KILL_ROWS)
    people_tab(fake)
    names = {i: f"Name {i}" for i in range(1, KILL_ROWS + 1)}
    # the fake's state lives in this process; each sync runs in a worker process killed
    project_file = write_project(tmp_path, fake.settings(SID, maxBatchRows=KILL_BATCH),
                                 batch=KILL_BATCH, changeTrackingField="updated_at",
                                 retry={"maxAttempts": 3, "backoffMs": 50})
    pace = Pace(first=[1.0], step=[0.08], tail=[0.05], window=10)
    landed: Counter[str] = Counter()
    state_db = tmp_path / ".sync_assets" / "state.db"
    people = sa.table("people", sa.column("id"), sa.column("name"), sa.column("updated_at"))

    def remaining() -> int:
        """Source records at or after the sync's cursor: what the next run reads."""
        cursor = None
        if state_db.exists():
            engine = sa.create_engine(f"sqlite:///{state_db}")
            with engine.connect() as conn:
                if sa.inspect(conn).has_table("_sync_assets_cursor"):
                    cursor = StateStore("to_sheet").load_cursor(conn)
            engine.dispose()
        engine = sa.create_engine(src)
        with engine.connect() as conn:
            stmt = sa.select(sa.func.count()).select_from(people)
            if cursor is not None:
                stmt = stmt.where(people.c.updated_at >= cursor)
            found = int(conn.execute(stmt).scalar() or 0)
        engine.dispose()
        return found

    for round_no in range(KILLS):
        batches = max(1, math.ceil(remaining() / KILL_BATCH))
        where, _ = kill_one_run([sys.executable, str(WORKER), str(project_file), "to_sheet"],
                                rng, batches, True, pace, tmp_path / "worker.err")
        landed[where] += 1
        picked = rng.sample(sorted(names), rng.randint(50, 400))
        for i in picked:
            names[i] = f"Name {i} r{round_no}"
        engine = sa.create_engine(src)
        with engine.begin() as conn:
            for i in picked:
                conn.execute(sa.update(people).where(people.c.id == i).values(
                    name=names[i], updated_at=BASE + timedelta(days=1, minutes=round_no)))
        engine.dispose()
    print(f"\nsheets: {KILLS} kills: {dict(landed)}")
    assert state_db.exists()
    proj = load_project(project_file, env={})
    final = run(proj, "to_sheet").to_spec()
    assert final["status"] == "completed" and final["stats"]["recordsErrored"] == 0, final
    again = run(proj, "to_sheet").to_spec()["stats"]
    assert (again["recordsInserted"], again["recordsUpdated"]) == (0, 0), again
    dispose_engines()
    rows = fake.records(SID, "People")
    emails = Counter(r["email"] for r in rows)
    assert len(rows) == len(emails) == KILL_ROWS, emails.most_common(3)
    assert {int(r["email"][4:].split("@")[0]): r["name"] for r in rows} == names
    assert landed["mid-run"] + landed["after last batch"] >= KILLS // 2, landed


# -- no secret anywhere ------------------------------------------------------------------------
def test_no_key_or_token_appears_in_results_logs_errors_or_dagster_metadata(
        tmp_path: Path, fake: FakeSheets, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    import dagster as dg

    from sync_assets import build_definitions

    seed(tmp_path, 12)
    people_tab(fake)
    path = write_project(tmp_path, fake.settings(SID, serviceAccountKey="${SHEETS_KEY}"))
    env = {"SHEETS_KEY": fake.key_json()}
    ok = sync(load_project(path, env=env))
    other = ServiceAccount.generate()  # a key the token endpoint does not know
    bad_key = other.key_json(fake.token_uri)
    refused = sync(load_project(path, env={"SHEETS_KEY": bad_key}))
    fake.tokens.violations.clear()  # that refusal was the point
    missing = write_project(tmp_path, {**fake.settings(SID), "spreadsheetId": "nope"})
    not_found = sync(load_project(missing, env={}))
    assert status(ok) == "completed" and status(refused) == status(not_found) == "failed"
    assert "NOT_FOUND" in errors(not_found)[0]["message"]
    assert "token could not be had" in errors(refused)[0]["message"]
    import os

    path = write_project(tmp_path, fake.settings(SID, serviceAccountKey="${SHEETS_KEY}"))
    os.environ["SHEETS_KEY"] = fake.key_json()
    try:
        defs = build_definitions(path)
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
        done = dg.materialize(assets, resources=defs.resources, raise_on_error=False)
    finally:
        del os.environ["SHEETS_KEY"]
    assert done.success, [str(e) for e in done.all_events if e.is_failure]
    (event,) = done.get_asset_materialization_events()
    meta = {k: str(v.value) for k, v in event.materialization.metadata.items()}
    assert meta["apiCalls"] == "3"  # the token, the tabs, the values: nothing changed
    texts = [json.dumps(r.to_spec(), default=str) for r in (ok, refused, not_found)]
    texts += [json.dumps(meta), capsys.readouterr().out, caplog.text,
              "\n".join(str(e) for e in done.all_events)]
    secrets = [json.loads(fake.key_json())["private_key_id"], json.loads(bad_key)[
        "private_key_id"], *fake.issued]
    secrets += [line for k in (fake.key_json(), bad_key)
                for line in json.loads(k)["private_key"].splitlines()[1:-1]]
    for text in texts:
        for secret in secrets:
            assert secret not in text
