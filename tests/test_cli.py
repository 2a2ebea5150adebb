"""The `sync-assets` command as a user runs it: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = """\
connectors:
  warehouse: {type: sql, url: "sqlite:///warehouse.db"}
syncs:
  - name: contact_to_warehouse
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: contacts,
                  operation: upsert, matchKey: [email]}
    schedule: "0 * * * *"
  - name: order_mirror
    source: {object: order}
    destination: {object: order_copy, operation: sync}
    syncMode: full
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_assets.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )


def test_validate_lists_each_sync_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "project.yaml").write_text(PROJECT)
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "SYNC                  DIRECTION  MODE         OPERATION  SCHEDULE\n"
        "contact_to_warehouse  push       incremental  upsert     0 * * * *\n"
        "order_mirror          push       full         sync       -\n"
        "2 syncs valid\n"
    )


def test_validate_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = PROJECT.replace("operation: sync", "operation: mirror").replace(
        "externalResource: contacts,", ""
    )
    (tmp_path / "project.yaml").write_text(bad)
    result = run_cli("validate", "project.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "project.yaml:6: syncs[0].destination.externalResource: is required with connector "
        "instance 'warehouse': the table to use, optionally as schema.table\n"
        "project.yaml:11: syncs[1].destination.operation: must be one of insert, update, "
        "upsert, delete, sync (got 'mirror')\n"
        "2 problems found\n"
    )


def test_validate_of_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("validate", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "nowhere.yaml: (file): does not exist\n1 problem found\n"


def test_a_usage_error_exits_2_without_traceback() -> None:
    result = run_cli("validate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "the following arguments are required: PATH" in result.stderr


def test_schema_prints_the_official_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$id"] == "https://schema.objectstack.io/v16.1.0/automation/DataSyncConfig.json"
    assert schema["required"] == ["name", "source", "destination"]


def test_schema_result_prints_the_execution_result_schema() -> None:
    schema = json.loads(run_cli("schema", "result").stdout)
    assert schema["required"] == ["id", "syncName", "status", "startedAt"]


def seeded_project(tmp_path: Path, warehouse_url: str | None = None) -> Path:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT, score TEXT)"))
        conn.execute(sa.text(
            "INSERT INTO contact VALUES (1, 'ada@x.io', '10'), (2, 'alan@x.io', 'n/a'),"
            " (3, 'grace@x.io', '7.5')"))
    engine.dispose()
    (tmp_path / "project.yaml").write_text(f"""\
objectstack: {{url: "sqlite:///os.db"}}
connectors:
  warehouse: {{type: sql, url: "{warehouse_url or 'sqlite:///wh.db'}"}}
syncs:
  - name: contacts
    source: {{object: contact}}
    destination:
      connectorInstanceId: warehouse
      externalResource: contacts
      operation: upsert
      matchKey: [email]
      mapping:
        - {{source: email, target: email}}
        - {{source: score, target: score, transform: {{type: cast, targetType: number}}}}
""")
    return tmp_path


def test_run_prints_a_summary_and_exits_1_when_a_run_is_partial(tmp_path: Path) -> None:
    project = seeded_project(tmp_path)
    result = run_cli("run", str(project))
    assert result.returncode == 1
    assert result.stdout.startswith("contacts: partial in ")
    assert result.stdout.split("s, ", 1)[1] == (
        "3 processed: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored\n"
        "  [CAST_ERROR] record 2 field score: cannot cast 'n/a' to number\n"
    )


def test_run_exits_0_when_every_run_completed(tmp_path: Path) -> None:
    import sqlalchemy as sa

    project = seeded_project(tmp_path)
    run_cli("run", str(project))
    engine = sa.create_engine(f"sqlite:///{project}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE contact SET score = '3' WHERE id = 2"))
    engine.dispose()
    again = run_cli("run", str(project), "--sync", "contacts")
    assert again.returncode == 0, again.stdout
    assert again.stdout.split("s, ", 1)[1] == (
        "3 processed: 1 inserted, 0 updated, 0 deleted, 2 skipped, 0 errored\n"
    )


def test_run_json_prints_one_protocol_result_per_line(tmp_path: Path) -> None:
    from sync_assets import parse_execution_result

    result = run_cli("run", str(seeded_project(tmp_path)), "--json")
    (line,) = result.stdout.splitlines()
    parsed = parse_execution_result(json.loads(line)).to_spec()
    assert parsed["syncName"] == "contacts" and parsed["status"] == "partial"
    assert parsed["stats"]["recordsInserted"] == 2
    assert parsed["errors"] == [{"recordId": "2", "field": "score",
                                 "message": "cannot cast 'n/a' to number",
                                 "code": "CAST_ERROR"}]


def test_an_unreachable_database_is_one_clear_message_without_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg2://syncer:Sup3r-Secret@127.0.0.1:{port}/wh"
    result = run_cli("run", str(seeded_project(tmp_path, url)))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "Sup3r-Secret" not in result.stdout + result.stderr
    assert result.stdout.startswith("contacts: failed in ")
    assert f"on postgresql+psycopg2://syncer:***@127.0.0.1:{port}/wh failed: OperationalError:" \
        in result.stdout


def test_an_unknown_sync_name_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("run", str(seeded_project(tmp_path)), "--sync", "nope")
    assert result.returncode == 2
    assert "no sync named 'nope'" in result.stderr and "syncs: contacts" in result.stderr


def test_plan_shows_counts_and_samples_and_writes_nothing(tmp_path: Path) -> None:
    project = seeded_project(tmp_path)
    result = run_cli("plan", str(project), "--sync", "contacts")
    assert result.stdout == (
        "plan for contacts (nothing written)\n"
        "  would process 3 records: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored\n"
        '  insert {"email": "ada@x.io", "score": 10}\n'
        '  insert {"email": "grace@x.io", "score": 7.5}\n'
        "  error  [CAST_ERROR] record 2 field score: cannot cast 'n/a' to number\n"
    )
    import sqlite3

    tables = sqlite3.connect(project / "wh.db").execute(
        "SELECT name FROM sqlite_master").fetchall()
    assert tables == []


def test_plan_creates_no_database_file_and_no_state_folder(tmp_path: Path) -> None:
    """#13 defect 13: a plan into a SQLite database that does not exist yet leaves no file."""
    project = seeded_project(tmp_path)
    before = sorted(p.name for p in project.iterdir())
    result = run_cli("plan", str(project), "--sync", "contacts")
    assert result.stdout.splitlines()[1] == (
        "  would process 3 records: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored")
    assert sorted(p.name for p in project.iterdir()) == before == ["os.db", "project.yaml"]


def test_run_shows_a_progress_line_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    project = seeded_project(tmp_path)
    main_fd, terminal_fd = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sync_assets.cli", "run", str(project)],
            stdout=subprocess.PIPE, stderr=terminal_fd, text=True, timeout=60,
        )
        os.close(terminal_fd)
        shown = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 1  # the seeded data has one bad record: partial
    assert b"\r  contacts: 3 read, 2 inserted, 0 updated, 0 skipped, 1 errored" in shown
    assert "\r" not in done.stdout  # the summary itself stays clean


def test_plan_and_run_take_a_plain_postgresql_url_as_users_copy_it(
        tmp_path: Path, pg_url: str) -> None:
    assert pg_url.startswith("postgresql://")  # no driver named: what users copy
    project = seeded_project(tmp_path, pg_url)
    plan = run_cli("plan", str(project), "--sync", "contacts")
    assert "Traceback" not in plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[1] == (
        "  would process 3 records: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored")
    result = run_cli("run", str(project))
    assert result.returncode == 1, result.stdout + result.stderr  # partial: one bad score
    assert result.stdout.split("s, ", 1)[1].startswith(
        "3 processed: 2 inserted, 0 updated, 0 deleted, 0 skipped, 1 errored\n")


def test_a_missing_database_driver_names_the_package_to_install(tmp_path: Path) -> None:
    result = run_cli("run", str(seeded_project(tmp_path, "mysql+mysqldb://u@127.0.0.1/wh")))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert ("the database driver 'MySQLdb' is not installed: pip install 'mysqlclient'"
            in result.stdout)


def test_a_password_in_the_url_query_string_is_never_printed(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = (f"postgresql://syncer@127.0.0.1:{port}/wh?password=QSecr3tQ"
           "&sslpassword=K3y-Phrase&application_name=sync")
    project = seeded_project(tmp_path, url)
    for args in (("plan", str(project), "--sync", "contacts"), ("run", str(project)),
                 ("run", str(project), "--json")):
        result = run_cli(*args)
        shown = result.stdout + result.stderr
        assert result.returncode == 1 and "Traceback" not in shown
        assert "QSecr3tQ" not in shown and "K3y-Phrase" not in shown, shown
        assert (f"postgresql://syncer@127.0.0.1:{port}/wh?application_name=sync"
                "&password=***&sslpassword=***") in shown


def big_project(tmp_path: Path, n: int) -> Path:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(sa.text("INSERT INTO contact VALUES (:i, :e)"),
                     [{"i": i, "e": f"p{i}@x.io"} for i in range(1, n + 1)])
    engine.dispose()
    (tmp_path / "project.yaml").write_text("""\
objectstack: {url: "sqlite:///os.db"}
connectors:
  warehouse: {type: sql, url: "sqlite:///wh.db"}
syncs:
  - name: contacts
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: contacts,
                  operation: upsert, matchKey: [email],
                  mapping: [{source: email, target: email},
                            {source: id, target: n, transform: {type: cast, targetType: string}}]}
    batchSize: 10
""")
    return tmp_path


def wait_for_a_committed_batch(project: Path, seconds: float = 60) -> None:
    """Until a running sync of `big_project` has committed its first batch."""
    import sqlite3
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with sqlite3.connect(project / "wh.db") as db:
                if db.execute("SELECT count(*) FROM contacts").fetchone()[0]:
                    return
        except sqlite3.OperationalError:  # no table yet
            continue
    raise AssertionError(f"no batch committed in {seconds} s")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_at_a_batch_boundary_with_a_result(
        tmp_path: Path, sig: int, code: int) -> None:
    import sqlite3

    project = big_project(tmp_path, 20_000)
    proc = subprocess.Popen([sys.executable, "-m", "sync_assets.cli", "run", str(project),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_a_committed_batch(project)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    result = json.loads(stdout)
    assert result["status"] == "cancelled"
    assert 0 < result["stats"]["recordsInserted"] < 20_000
    with sqlite3.connect(project / "wh.db") as db:
        held = db.execute("SELECT count(*) FROM contacts").fetchone()[0]
    assert held == result["stats"]["recordsInserted"]  # exactly what it says it committed
    again = run_cli("run", str(project), "--json")
    stats = json.loads(again.stdout)["stats"]
    assert stats["recordsInserted"] == 20_000 - held
    with sqlite3.connect(project / "wh.db") as db:
        assert db.execute("SELECT count(*), count(DISTINCT email) FROM contacts").fetchone() \
            == (20_000, 20_000)


def test_a_second_run_of_a_sync_waits_then_says_already_running(tmp_path: Path) -> None:
    import sqlite3

    project = big_project(tmp_path, 20_000)
    first = subprocess.Popen([sys.executable, "-m", "sync_assets.cli", "run", str(project),
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for_a_committed_batch(project)
    second = run_cli("run", str(project), "--json", "--wait", "0.5")
    assert second.returncode == 1
    result = json.loads(second.stdout)
    assert result["status"] == "cancelled"
    assert result["errors"] == [{"code": "ALREADY_RUNNING", "message": "another run of "
                                 "contacts is in progress (waited 0.5 s); this run wrote "
                                 "nothing"}]
    assert result["stats"]["recordsProcessed"] == 0
    stdout, _ = first.communicate(timeout=120)
    assert json.loads(stdout)["stats"]["recordsInserted"] == 20_000
    with sqlite3.connect(project / "wh.db") as db:
        assert db.execute("SELECT count(*), count(DISTINCT email) FROM contacts").fetchone() \
            == (20_000, 20_000)


def test_plan_does_not_wait_out_the_retries_of_a_refused_batch(tmp_path: Path) -> None:
    """#13 defect 6: a batch the destination refuses, under the default retry (3 attempts,
    30 s apart), answered at once: a plan's writes are rolled back, waiting adds nothing."""
    import time

    import sqlalchemy as sa

    project = seeded_project(tmp_path)
    engine = sa.create_engine(f"sqlite:///{project}/wh.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (email TEXT PRIMARY KEY, score REAL, "
                             "nickname TEXT NOT NULL)"))
    engine.dispose()
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(
        text + "        - {source: email, target: nickname, transform: {type: constant, "
               "value: null}}\n")
    started = time.monotonic()
    result = run_cli("plan", str(project), "--sync", "contacts")
    assert time.monotonic() - started < 30, result.stdout
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        "  error  [WRITE_ERROR] writing to warehouse.contacts failed: IntegrityError: NOT NULL "
        "constraint failed: contacts.nickname")


#: the reproductions of #13 defect 6 that are config errors: each one line, exit 2
MALFORMED = {
    "a NUL byte": (b"syncs:\n  - name: a\x00b\n",
                   "p.yaml:2: (file): invalid YAML: a control character (U+0000) is not "
                   "allowed in YAML text"),
    "a control character": (b"syncs:\n  - {name: s, label: a\x07b}\n",
                            "p.yaml:2: (file): invalid YAML: a control character (U+0007) is "
                            "not allowed in YAML text"),
    "a connector type that is a list": (
        b"connectors:\n  wh: {type: [sql], url: 'sqlite:///w.db'}\n",
        "p.yaml:2: connectors.wh.type: must be the name of a connector type; available: "
        "{types}"),
    "2,000 nested brackets": (b"syncs: " + b"[" * 2000 + b"]" * 2000 + b"\n",
                              "p.yaml:1: (file): invalid YAML: nested too deeply (64 levels are "
                              "allowed)"),
    "an unknown engineOptions key": (
        b"connectors:\n  wh: {type: sql, url: 'sqlite:///w.db', engineOptions: {bogus: 1}}\n",
        "p.yaml:2: connectors.wh.engineOptions.bogus: 'bogus' is not an option of SQLAlchemy's "
        "create_engine() for this database (SQLiteDialect_pysqlite/QueuePool/Engine)"),
    "invalid UTF-8": (b"syncs:\n  - name: caf\xe9\n", "p.yaml: (file): is not UTF-8 text"),
    "a duplicate key": (b"syncs: []\nsyncs: []\n",
                        "p.yaml:2: syncs: key 'syncs' appears twice in one mapping (first on "
                        "line 1)"),
    "a huge number": (b"syncs:\n  - {name: s, batchSize: " + b"9" * 5000 + b"}\n",
                      "p.yaml:2: syncs[0].batchSize: is a number written with more than 100 "
                      "characters (quote it to keep it as text)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_project_is_one_line_and_exit_2_for_validate_and_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    from sync_assets.cli import main
    from sync_assets.connectors.registry import connector_types

    content, problem = MALFORMED[case]
    problem = problem.replace("{types}", ", ".join(sorted(connector_types())))
    (tmp_path / "p.yaml").write_bytes(content)
    for args in (["validate", "p.yaml"], ["plan", "p.yaml", "--sync", "s"]):
        with pytest.MonkeyPatch.context() as env:
            env.chdir(tmp_path)
            assert main(args) == 2
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", f"{problem}\n1 problem found\n")


def test_plan_into_a_schema_that_does_not_exist_is_one_line_and_exit_1(tmp_path: Path) -> None:
    project = seeded_project(tmp_path)
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(
        text.replace('url: "sqlite:///wh.db"}', 'url: "sqlite:///wh.db", schema: nosuch}'))
    result = run_cli("plan", str(project), "--sync", "contacts")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [s for s in result.stdout.splitlines() if s.startswith("  error  ")]
    assert line.startswith("  error  [CONNECTOR_ERROR] ") and "unknown database" in line
    assert "nosuch" in line


# -- validate: every problem at once, --json, --connect (#14) -------------------------------


def cli(capsys: pytest.CaptureFixture[str], cwd: Path, *args: str) -> tuple[int, str, str]:
    """`sync-assets ARGS` in process, run in `cwd`: (exit code, stdout, stderr)."""
    from sync_assets.cli import main

    with pytest.MonkeyPatch.context() as env:
        env.chdir(cwd)
        code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


THREE_MISTAKES = """\
syncs:
  - name: contacts
    source: {object: contact}
    destination: {object: lead, operation: upsert, matchKey: [email]}
    colour: blue
  - name: orders
    source: {object: order}
    destination: {object: order_copy, operation: mirror}
  - name: accounts
    source: {object: account}
    destination: {object: account_copy, operation: upsert, mapping: {email: mail},
                  matchKey: [emial]}
"""


def test_validate_reports_schema_and_semantic_problems_of_every_sync_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(THREE_MISTAKES)
    assert cli(capsys, tmp_path, "validate", "p.yaml") == (2, "", (
        "p.yaml:5: syncs[0].colour: is not a protocol key (the official parser would drop it "
        "silently, so it is refused); keys here: name, label, description, source, "
        "destination, direction, syncMode, conflictResolution, schedule, enabled, "
        "changeTrackingField, batchSize, retry, validation, errorHandling, optimization, "
        "audit, tags, metadata\n"
        "p.yaml:8: syncs[1].destination.operation: must be one of insert, update, upsert, "
        "delete, sync (got 'mirror')\n"
        "p.yaml:12: syncs[2].destination.matchKey[0]: 'emial' is not a mapped field; use a "
        "source field or a destination field of the mapping (mail)\n"
        "3 problems found\n"))


PROTOCOL_PAGE_EXAMPLE = """\
name: salesforce_contact_sync
label: Salesforce Contact Sync
source:
  object: contact
  filters: {status: active}
destination:
  connector: salesforce
  operation: upsert_contact
  mapping: {first_name: FirstName, last_name: LastName, email: Email}
syncMode: incremental
schedule: '0 * * * *'
"""


def test_validate_of_the_protocol_pages_example_names_connector_and_operation_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "contact_sync.yaml").write_text(PROTOCOL_PAGE_EXAMPLE)
    assert cli(capsys, tmp_path, "validate", "contact_sync.yaml") == (2, "", (
        "contact_sync.yaml:7: destination.connector: is not a protocol key: the official "
        "parser drops it, leaving the destination without a system, so it is refused; write "
        "destination: {connectorInstanceId: salesforce, externalResource: <table or object>} "
        "with salesforce defined under `connectors:` (like salesforce: {type: sql, url: "
        "...}), or destination: {object: <name>} for an ObjectStack object\n"
        "contact_sync.yaml:8: destination.operation: must be one of insert, update, upsert, "
        "delete, sync (got 'upsert_contact')\n"
        "2 problems found\n"))


def test_the_protocol_pages_example_corrected_as_the_message_says_is_valid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrected = PROTOCOL_PAGE_EXAMPLE.replace(
        "  connector: salesforce\n  operation: upsert_contact\n",
        "  connectorInstanceId: salesforce\n  externalResource: Contact\n"
        "  operation: upsert\n  matchKey: [email]\n")
    (tmp_path / "contact_sync.yaml").write_text(corrected)
    (tmp_path / "connectors.yaml").write_text(
        "connectors:\n  salesforce: {type: sql, url: 'sqlite:///crm.db'}\n")
    code, out, err = cli(capsys, tmp_path, "validate", ".")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "1 sync valid"


def test_validate_json_lists_the_syncs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    (tmp_path / "project.yaml").write_text(PROJECT)
    code, out, err = cli(capsys, tmp_path, "validate", "project.yaml", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "ok": True, "problems": [], "notices": [], "errors": [],
        "syncs": [
            {"name": "contact_to_warehouse", "file": "project.yaml", "line": 4,
             "direction": "push", "syncMode": "incremental", "operation": "upsert",
             "schedule": "0 * * * *", "enabled": True},
            {"name": "order_mirror", "file": "project.yaml", "line": 9, "direction": "push",
             "syncMode": "full", "operation": "sync", "schedule": None, "enabled": True},
        ],
    }


def test_validate_json_lists_every_problem_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(THREE_MISTAKES)
    code, out, err = cli(capsys, tmp_path, "validate", "p.yaml", "--json")
    assert (code, err) == (2, "")
    result = json.loads(out)
    assert (result["ok"], result["syncs"]) == (False, [])
    assert [(p["file"], p["line"], p["path"]) for p in result["problems"]] == [
        ("p.yaml", 5, "syncs[0].colour"), ("p.yaml", 8, "syncs[1].destination.operation"),
        ("p.yaml", 12, "syncs[2].destination.matchKey[0]")]
    assert result["problems"][1]["message"] == (
        "must be one of insert, update, upsert, delete, sync (got 'mirror')")


def test_plan_json_shows_counts_samples_and_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = seeded_project(tmp_path)
    code, out, err = cli(capsys, project, "plan", ".", "--sync", "contacts", "--json")
    assert (code, err) == (1, "")  # one record fails its cast: the plan is partial
    assert json.loads(out) == {
        "ok": False, "sync": "contacts", "status": "partial",
        "stats": {"recordsProcessed": 3, "recordsInserted": 2, "recordsUpdated": 0,
                  "recordsDeleted": 0, "recordsSkipped": 0, "recordsErrored": 1,
                  "conflictsDetected": 0, "conflictsResolved": 0},
        "samples": {"insert": [{"email": "ada@x.io", "score": 10},
                               {"email": "grace@x.io", "score": 7.5}],
                    "update": [], "delete": []},
        "errors": [{"recordId": "2", "field": "score", "message": "cannot cast 'n/a' to "
                    "number", "code": "CAST_ERROR"}],
    }


def test_plan_json_of_a_config_error_lists_its_problems_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = seeded_project(tmp_path)
    code, out, err = cli(capsys, project, "plan", ".", "--sync", "nope", "--json")
    assert (code, err) == (2, "")
    assert json.loads(out) == {"ok": False, "problems": [
        {"file": None, "line": None, "path": "--sync",
         "message": f"no sync named 'nope' in {project.resolve()}; syncs: contacts"}]}


def connect_project(tmp_path: Path, sync: str, warehouse: str = "sqlite:///wh.db") -> Path:
    """A project of one sync (YAML lines under `syncs:`) reading the table contact (id, email,
    name, updated_at) of os.db into the warehouse, whose table people has (email, name)."""
    import sqlite3

    with sqlite3.connect(tmp_path / "os.db") as db:
        db.execute("CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                   "updated_at TEXT)")
    with sqlite3.connect(tmp_path / "wh.db") as db:
        db.execute("CREATE TABLE people (email TEXT PRIMARY KEY, name TEXT)")
    (tmp_path / "p.yaml").write_text(
        "objectstack: {url: 'sqlite:///os.db'}\n"
        f"connectors:\n  warehouse: {{type: sql, url: '{warehouse}'}}\n"
        "syncs:\n" + sync)
    return tmp_path


def test_validate_connect_passes_when_every_field_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact, filters: {name: {$ne: ''}}}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {email: email, name: name}}
    changeTrackingField: updated_at
""")
    assert cli(capsys, project, "validate", "p.yaml", "--connect") == (0, (
        "SYNC    DIRECTION  MODE         OPERATION  SCHEDULE\n"
        "people  push       incremental  upsert     -\n"
        "1 sync valid\n"
        "fields checked against 2 live record sets\n"), "")


def test_validate_connect_names_each_source_field_the_source_lacks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact, filters: {status: active}}
    destination:
      connectorInstanceId: warehouse
      externalResource: people
      operation: upsert
      matchKey: [email]
      mapping:
        - {source: email, target: email}
        - {source: full_name, target: name}
    changeTrackingField: modified_at
""")
    fields = "its fields: id, email, name, updated_at"
    assert cli(capsys, project, "validate", "p.yaml", "--connect") == (2, "", (
        f"p.yaml:6: syncs[0].source.filters: 'status' is not a field of objectstack.contact; "
        f"{fields}\n"
        f"p.yaml:14: syncs[0].destination.mapping[1].source: 'full_name' is not a field of "
        f"objectstack.contact; {fields}\n"
        f"p.yaml:15: syncs[0].changeTrackingField: 'modified_at' is not a field of "
        f"objectstack.contact; {fields}\n"
        "3 problems found\n"))


def test_validate_connect_names_each_target_field_the_destination_lacks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {email: mail, name: name}}
""")
    assert cli(capsys, project, "validate", "p.yaml", "--connect") == (2, "", (
        "p.yaml:8: syncs[0].destination.mapping.email: 'mail' is not a field of "
        "warehouse.people; its fields: email, name\n"
        "1 problem found\n"))


def test_validate_connect_without_mapping_checks_match_key_and_fields_on_both_sides(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [mail]}
""")
    assert cli(capsys, project, "validate", "p.yaml", "--connect") == (2, "", (
        "p.yaml:7: syncs[0].destination: has no mapping, so every source field is written "
        "under its own name, and warehouse.people has no field id, updated_at; its fields: "
        "email, name\n"
        "p.yaml:8: syncs[0].destination.matchKey[0]: 'mail' is not a field of "
        "objectstack.contact; its fields: id, email, name, updated_at\n"
        "2 problems found\n"))


def test_validate_connect_accepts_a_destination_the_first_run_creates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: new_people,
                  operation: upsert, matchKey: [email], mapping: {email: mail}}
""")
    code, out, err = cli(capsys, project, "validate", "p.yaml", "--connect")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == (
        "notice: p.yaml:7: syncs[0].destination.externalResource: warehouse.new_people does "
        "not exist yet: the first run creates it")


def test_validate_connect_refuses_a_source_that_does_not_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contacts}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email]}
""")
    assert cli(capsys, project, "validate", "p.yaml", "--connect") == (2, "", (
        "p.yaml:6: syncs[0].source.object: objectstack.contacts does not exist, and this "
        "sync reads it\n"
        "1 problem found\n"))


def test_validate_connect_of_an_unreachable_database_exits_1_without_its_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {email: email}}
""", warehouse=f"postgresql://syncer:Sup3r-Secret@127.0.0.1:{port}/wh")
    code, out, err = cli(capsys, project, "validate", "p.yaml", "--connect")
    assert (code, out) == (1, "")
    assert "Sup3r-Secret" not in err and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(
        "error: p.yaml:7: syncs[0].destination: reading the structure of warehouse.people on "
        f"postgresql://syncer:***@127.0.0.1:{port}/wh failed: OperationalError: ")


def test_validate_connect_json_puts_an_unreachable_system_under_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {email: email}}
""", warehouse="postgresql://syncer:Sup3r-Secret@127.0.0.1:9/wh")
    code, out, err = cli(capsys, project, "validate", "p.yaml", "--connect", "--json")
    assert (code, err) == (1, "")
    result = json.loads(out)
    assert (result["ok"], result["problems"], [s["name"] for s in result["syncs"]]) == (
        False, [], ["people"])
    (error,) = result["errors"]
    assert (error["file"], error["line"], error["path"]) == (
        "p.yaml", 7, "syncs[0].destination")
    assert "127.0.0.1:9/wh failed: OperationalError" in error["message"]
    assert "Sup3r-Secret" not in out


def test_validate_connect_exits_2_when_it_found_problems_though_a_system_was_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = connect_project(tmp_path, """\
  - name: people
    source: {object: contact}
    destination: {connectorInstanceId: down, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {email: email}}
  - name: more_people
    source: {object: contact}
    destination: {connectorInstanceId: warehouse, externalResource: people,
                  operation: upsert, matchKey: [email], mapping: {mail: email}}
""")
    text = (project / "p.yaml").read_text().replace(
        "connectors:\n", "connectors:\n  down: {type: sql, url: 'postgresql://u@127.0.0.1:9/x'}\n")
    (project / "p.yaml").write_text(text)
    code, out, err = cli(capsys, project, "validate", "p.yaml", "--connect")
    assert (code, out) == (2, "")
    assert err.splitlines()[0].startswith("error: p.yaml:8: syncs[0].destination: ")
    assert err.splitlines()[1:] == [
        "p.yaml:13: syncs[1].destination.mapping.mail: 'mail' is not a field of "
        "objectstack.contact; its fields: id, email, name, updated_at",
        "1 problem found"]


def test_help_imports_neither_pydantic_nor_sqlalchemy_nor_dagster() -> None:
    # start-up is what a command imports: --help needs argparse alone
    code = ("import contextlib, io, sys\n"
            "from sync_assets.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['--help']) == 0\n"
            "print(sorted(m for m in ('pydantic', 'sqlalchemy', 'dagster', 'pyarrow', 'yaml') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_run_leaves_pandas_unimported_and_pandas_still_works_after(tmp_path: Path) -> None:
    # pyarrow imports pandas (0.2 s, 30 MB) on its first Python value only to ask whether
    # it is a pandas object; a run never gives it one
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(sa.text("INSERT INTO contact VALUES (:i, :e)"),
                     [{"i": i, "e": f"p{i}@x.io"} for i in range(1, 301)])
    engine.dispose()
    (tmp_path / "project.yaml").write_text(
        'objectstack: {url: "sqlite:///os.db"}\n'
        'connectors: {warehouse: {type: sql, url: "sqlite:///wh.db"}}\n'
        "syncs:\n  - {name: contacts, source: {object: contact}, destination: "
        "{connectorInstanceId: warehouse, externalResource: contacts, operation: upsert, "
        "matchKey: [id], mapping: {id: id, email: email}}}\n")
    script = (
        "import sys\nfrom sync_assets.cli import main\n"
        "code = main(['run', 'project.yaml'])\n"
        "print('pandas imported:', 'pandas' in sys.modules)\n"
        "import pandas, pyarrow\n"
        "print(pyarrow.Table.from_pandas(pandas.DataFrame({'x': [1, 2]})).num_rows)\n"
        "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 processed: 300 inserted" in done.stdout
    assert done.stdout.splitlines()[-2:] == ["pandas imported: False", "2"]
