"""The Dagster layer: definitions, assets, metadata, checks, schedules, sensors, retries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_assets import SyncTranslator, build_definitions, load_project
from sync_assets.orchestration import (
    CHECK_NAME,
    DRIFT_CHECK_NAME,
    FULL_REFRESH_TAG,
    STATUS_TAG,
    SYNC_TAG,
    SmtpNotifier,
)

from dagster_helpers import ROOT, demo_copy


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return demo_copy(tmp_path)


def materialize(
    defs: dg.Definitions, key: list[str], **kwargs: object
) -> dg.ExecuteInProcessResult:
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    selection = dg.AssetSelection.assets(dg.AssetKey(key)).required_multi_asset_neighbors()
    return dg.materialize(assets, resources=defs.resources, selection=selection,
                          raise_on_error=False, **kwargs)  # type: ignore[arg-type]


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def completed(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_NAME]
    return check


def warehouse(demo: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{demo.parent}/data/warehouse.db")


def test_the_demo_definitions_load_and_validate(demo: Path) -> None:
    defs = build_definitions(demo)
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"warehouse/crm_contacts", "warehouse/crm_accounts", "warehouse/orders",
            "objectstack/vip_contact"} <= keys


def test_dagster_cli_validates_the_workspace(demo: Path) -> None:
    env = {**os.environ, "SYNC_ASSETS_PROJECT": str(demo)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_an_asset_is_keyed_by_its_destination_and_depends_on_its_source(demo: Path) -> None:
    defs = build_definitions(demo)
    spec = defs.resolve_assets_def(["warehouse", "crm_contacts"]).specs_by_key[
        dg.AssetKey(["warehouse", "crm_contacts"])]
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey(["objectstack", "contact"])]
    assert spec.kinds == {"objectstack", "sqlite"}
    assert spec.tags["crm"] == "" and spec.tags["sync_assets/operation"] == "upsert"
    assert spec.metadata["sync_assets/metadata/owner"] == "data-team"
    assert spec.description and spec.description.startswith("Active and lead contacts")
    assert spec.description.endswith(
        "reads `objectstack.contact` (objectstack) · writes `warehouse.crm_contacts` (sqlite)")
    lineage = spec.metadata["dagster/column_lineage"]
    assert lineage.deps_by_column["country_code"] == [
        dg.TableColumnDep(asset_key=dg.AssetKey(["objectstack", "contact"]),
                          column_name="country")]
    assert lineage.deps_by_column["source_system"] == []  # a constant has no upstream column


def test_each_source_is_an_external_asset_upstream_of_the_syncs_that_read_it(
        demo: Path) -> None:
    """#14: the global lineage connects sources to syncs; two syncs reading `contact` share
    one source asset."""
    graph = build_definitions(demo).resolve_asset_graph()
    contact = graph.get(dg.AssetKey(["objectstack", "contact"]))
    assert not contact.is_materializable
    assert contact.group_name == "sources" and contact.kinds == {"objectstack"}
    assert {k.to_user_string() for k in contact.child_keys} == {
        "warehouse/crm_contacts", "objectstack/vip_contact"}
    sources = {k.to_user_string() for k in graph.get_all_asset_keys()
               if not graph.get(k).is_materializable}
    assert sources == {"objectstack/contact", "objectstack/account", "objectstack/order"}
    columns = [c.name for c in contact.metadata["dagster/column_schema"].columns]
    assert {"email", "first_name", "lifetime_value"} <= set(columns)


def test_the_readmes_dagster_snippet_runs_from_another_directory(tmp_path: Path) -> None:
    """The README's code-location example, as written, with the demo's syncs beside it,
    validated by Dagster's CLI started from elsewhere; the user's asset replaces the
    external spec of `objectstack/contact` and runs before the syncs that read it."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("2. In your own code location", 1)[1].split("```python\n", 1)[1]
    code = "\n".join(line[3:] for line in block.split("   ```", 1)[0].splitlines())
    location = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "project", location / "syncs")
    (location / "data").mkdir()
    for db in (ROOT / "examples" / "data").glob("*.db"):
        shutil.copy(db, location / "data")
    (location / "definitions.py").write_text(code)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-f", str(location / "definitions.py")],
        cwd=elsewhere, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if k != "SYNC_ASSETS_PROJECT"})
    assert done.returncode == 0, done.stderr[-3000:]
    namespace: dict[str, object] = {"__file__": str(location / "definitions.py")}
    exec(compile(code, str(location / "definitions.py"), "exec"), namespace)
    graph = namespace["defs"].resolve_asset_graph()  # type: ignore[attr-defined]
    assert graph.get(dg.AssetKey(["objectstack", "contact"])).is_materializable


def test_a_translator_can_rename_assets(demo: Path) -> None:
    class Prefixed(SyncTranslator):
        def get_asset_key(self, sync):  # type: ignore[no-untyped-def]
            return super().get_asset_key(sync).with_prefix("prod")

    defs = build_definitions(demo, translator=Prefixed)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "prod/warehouse/orders" in keys


def test_schedules_follow_the_config_and_enabled(demo: Path) -> None:
    defs = build_definitions(demo, timezone="Europe/Berlin")
    contacts = defs.resolve_schedule_def("sync__contacts_to_warehouse__schedule")
    assert contacts.cron_schedule == "0 * * * *"
    assert contacts.execution_timezone == "Europe/Berlin"
    assert contacts.default_status == dg.DefaultScheduleStatus.RUNNING
    assert contacts.tags == {SYNC_TAG: "contacts_to_warehouse"}
    vip = defs.resolve_schedule_def("sync__vip_contacts__schedule")  # enabled: false
    assert vip.default_status == dg.DefaultScheduleStatus.STOPPED


def test_a_scheduled_sync_is_late_after_one_interval_and_a_grace_period(demo: Path) -> None:
    """#14: hourly -> late after 66 minutes; daily -> after 26.4 hours; unscheduled: never."""
    from datetime import timedelta

    graph = build_definitions(demo).resolve_asset_graph()

    def window(key: list[str]) -> timedelta | None:
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        return None if policy is None else timedelta(seconds=policy.fail_window.to_timedelta()
                                                     .total_seconds())

    assert window(["warehouse", "crm_contacts"]) == timedelta(minutes=66)  # "0 * * * *"
    assert window(["warehouse", "crm_accounts"]) == timedelta(hours=26.4)  # daily
    assert window(["warehouse", "orders"]) is None  # realtime: a sensor, no schedule


def test_jobs_tag_runs_with_the_sync_name(demo: Path) -> None:
    job = build_definitions(demo).resolve_job_def("sync__orders_realtime__job")
    assert job.tags[SYNC_TAG] == "orders_realtime"


def test_a_realtime_sensor_asks_for_a_run_only_when_the_source_changed(demo: Path) -> None:
    defs = build_definitions(demo, sensor_interval_seconds=5)
    sensor = defs.resolve_sensor_def("sync__orders_realtime__realtime")
    assert sensor.minimum_interval_seconds == 5
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert len(first.run_requests or []) == 1
        again = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert not again.run_requests and again.skip_message
        os_db = sa.create_engine(f"sqlite:///{demo.parent}/data/objectstack.db")
        with os_db.begin() as conn:
            conn.execute(sa.text("UPDATE \"order\" SET stage = 'Paid', "
                                 "updated_at = '2030-01-01 00:00:00' WHERE id = 1"))
        os_db.dispose()
        changed = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert len(changed.run_requests or []) == 1
        assert changed.run_requests[0].tags[SYNC_TAG] == "orders_realtime"


def test_materialization_metadata_carries_the_result(demo: Path) -> None:
    result = materialize(build_definitions(demo), ["warehouse", "orders"])
    assert result.success
    meta = metadata(result)
    assert meta["status"] == "completed"
    assert meta["recordsProcessed"] == 1500 and meta["recordsInserted"] == 1500
    assert meta["recordsUpdated"] == 0 and meta["recordsErrored"] == 0
    assert meta["dagster/row_count"] == 1500
    assert isinstance(meta["durationMs"], int)
    assert meta["cursor"]  # the change-tracking value reached
    check = completed(result)
    assert check.passed


def test_column_types_are_the_destination_tables_own_after_a_run(demo: Path) -> None:
    """#14: casts type a column before the first run; each run reports the written table's
    own column types, which match the table."""
    defs = build_definitions(demo)
    before = defs.resolve_assets_def(["warehouse", "crm_contacts"]).specs_by_key[
        dg.AssetKey(["warehouse", "crm_contacts"])].metadata["dagster/column_schema"]
    declared = {c.name: c.type for c in before.columns}
    assert declared["lifetime_value"] == "float"  # cast to number
    assert declared["source_system"] == "text"  # a constant
    assert declared["email"] == "unknown"  # only the source can tell, at run time

    meta = metadata(materialize(defs, ["warehouse", "orders"]))

    shown = {c.name: c.type for c in meta["dagster/column_schema"].columns}
    inspector = sa.inspect(warehouse(demo))
    assert shown == {c["name"]: str(c["type"]) for c in inspector.get_columns("orders")}
    assert shown["amount"] == "NUMERIC(12, 2)" and shown["order_id"] == "INTEGER"


def test_a_partial_run_fails_the_check_with_the_error_table(demo: Path) -> None:
    result = materialize(build_definitions(demo), ["warehouse", "crm_contacts"])
    assert result.success  # partial still materializes
    meta = metadata(result)
    assert meta["status"] == "partial"
    assert meta["recordsErrored"] == 9  # the seed's "n/a" lifetime values
    check = completed(result)
    assert not check.passed
    table = check.metadata["errors"].value
    assert len(table.records) == 9
    assert {r.data["code"] for r in table.records} == {"CAST_ERROR"}
    assert all(r.data["field"] == "lifetime_value" for r in table.records)


def test_the_check_stays_failed_while_failed_records_wait(demo: Path) -> None:
    """#13 defect 10: the next run, with nothing changed in the source, retries the 9
    records that failed and reports them again: the check does not turn green over them."""
    defs = build_definitions(demo)
    assert metadata(materialize(defs, ["warehouse", "crm_contacts"]))["recordsErrored"] == 9

    again = materialize(defs, ["warehouse", "crm_contacts"])

    meta = metadata(again)
    assert (meta["status"], meta["recordsErrored"], meta["recordsInserted"]) == (
        "partial", 9, 0)
    check = completed(again)
    assert not check.passed
    assert len(check.metadata["errors"].value.records) == 9


@pytest.mark.parametrize("how", ["drop", "truncate", "delete some"])
def test_a_destination_that_lost_records_is_restored_and_the_drift_check_warns(
        demo: Path, how: str) -> None:
    """#13 defect 3: the next incremental run finds what went missing, writes exactly that
    back, and `destination_intact` says so."""
    defs = build_definitions(demo)
    first = materialize(defs, ["warehouse", "orders"])
    (intact,) = [c for c in first.get_asset_check_evaluations()
                 if c.check_name == DRIFT_CHECK_NAME]
    assert intact.passed
    wh = warehouse(demo)
    with wh.begin() as conn:
        conn.execute(sa.text({"drop": "DROP TABLE orders", "truncate": "DELETE FROM orders",
                              "delete some": "DELETE FROM orders WHERE order_id <= 400"}[how]))
        before = conn.execute(sa.text(
            "SELECT count(*) FROM orders")).scalar() if how != "drop" else None

    again = materialize(defs, ["warehouse", "orders"])

    meta = metadata(again)
    missing = 400 if how == "delete some" else 1500
    assert (meta["recordsInserted"], meta["recordsUpdated"]) == (missing, 0)
    assert meta["dagster/row_count"] == 1500
    (check,) = [c for c in again.get_asset_check_evaluations()
                if c.check_name == DRIFT_CHECK_NAME]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["missingRecords"].value == missing
    assert check.metadata["syncedRecords"].value == 1500
    if before is not None:
        assert check.metadata["destinationRows"].value == before
    wh.dispose()
    third = materialize(defs, ["warehouse", "orders"])
    assert [c.passed for c in third.get_asset_check_evaluations()
            if c.check_name == DRIFT_CHECK_NAME] == [True]


@pytest.mark.parametrize("how", ["run_config", "tag"])
def test_a_dry_run_from_the_launchpad_shows_the_plan_and_writes_nothing(
        demo: Path, how: str) -> None:
    """#14: Census-style dry runs: counts and samples as an observation of the asset, no
    materialization, no check evaluated, nothing written."""
    kwargs: dict[str, object] = (
        {"run_config": {"ops": {"sync__orders_realtime": {"config": {"dry_run": True}}}}}
        if how == "run_config" else {"tags": {"sync/dry_run": "true"}})

    result = materialize(build_definitions(demo), ["warehouse", "orders"], **kwargs)

    assert result.success
    assert result.get_asset_materialization_events() == []
    assert result.get_asset_check_evaluations() == []
    (observation,) = [e.event_specific_data.asset_observation  # type: ignore[union-attr]
                      for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["sync_assets/dry_run"] is True
    assert (meta["recordsInserted"], meta["recordsProcessed"]) == (1500, 1500)
    assert len(meta["samples"]["insert"]) == 5
    wh = warehouse(demo)
    assert "orders" not in sa.inspect(wh).get_table_names()
    wh.dispose()


def test_a_failed_sync_fails_the_run(demo: Path) -> None:
    os_db = sa.create_engine(f"sqlite:///{demo.parent}/data/objectstack.db")
    with os_db.begin() as conn:
        conn.execute(sa.text('DROP TABLE "order"'))
    os_db.dispose()
    result = materialize(build_definitions(demo), ["warehouse", "orders"])
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "source table objectstack.order does not exist" in str(
        failure.step_failure_data.error.message)


def test_batches_are_retried_by_the_engine_alone(demo: Path) -> None:
    """#14: one retry layer per failure: no step RetryPolicy to multiply the engine's."""
    for key in (["warehouse", "crm_contacts"], ["warehouse", "orders"]):
        assert build_definitions(demo).resolve_assets_def(key).op.retry_policy is None


def test_an_unreachable_source_is_run_again_and_fails_with_its_cause(demo: Path) -> None:
    """crm_contacts has retry {maxAttempts: 2, backoffMs: 1000}: a source that cannot be
    read fails the run three times in all, 1 s and 2 s apart, and the step's error is the
    cause, not Dagster's 'exceeded max retries'."""
    os_db = sa.create_engine(f"sqlite:///{demo.parent}/data/objectstack.db")
    with os_db.begin() as conn:
        conn.execute(sa.text("DROP TABLE contact"))
    os_db.dispose()
    started = time.monotonic()

    result = materialize(build_definitions(demo), ["warehouse", "crm_contacts"])

    assert not result.success
    assert time.monotonic() - started >= 3.0
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "sync contacts_to_warehouse failed: source table objectstack.contact does not " \
           "exist" in message
    assert "max_retries" not in message and "Exceeded" not in message


def test_a_partial_run_is_tagged_partial_in_the_runs_list(demo: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(build_definitions(demo), ["warehouse", "crm_contacts"],
                         instance=instance)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[STATUS_TAG] == "partial"
    orders = materialize(build_definitions(demo), ["warehouse", "orders"], instance=instance)
    assert instance.get_run_by_id(orders.run_id).tags[STATUS_TAG] == "completed"  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["run_config", "tag"])
def test_a_full_refresh_repairs_a_destination_changed_by_hand(demo: Path, how: str) -> None:
    defs = build_definitions(demo)
    assert materialize(defs, ["warehouse", "orders"]).success
    wh = warehouse(demo)
    with wh.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET currency = 'XXX' WHERE order_id = 7"))
    normal = metadata(materialize(defs, ["warehouse", "orders"]))
    assert normal["recordsUpdated"] == 0  # nothing changed in the source: nothing read
    kwargs: dict[str, object] = (
        {"run_config": {"ops": {"sync__orders_realtime": {"config": {"full_refresh": True}}}}}
        if how == "run_config" else {"tags": {FULL_REFRESH_TAG: "true"}}
    )
    full = metadata(materialize(defs, ["warehouse", "orders"], **kwargs))
    assert full["recordsUpdated"] == 1 and full["recordsSkipped"] == 1499
    with wh.connect() as conn:
        assert conn.execute(sa.text("SELECT currency FROM orders WHERE order_id = 7")).scalar() \
            in ("EUR", "USD")
    wh.dispose()


def test_loading_a_thousand_syncs(tmp_path: Path) -> None:
    lines = ["objectstack: {url: 'sqlite:///os.db'}", "syncs:"]
    for i in range(1000):
        lines.append(f"  - {{name: s{i}, source: {{object: t{i}}}, destination: "
                     f"{{object: c{i}, operation: upsert, matchKey: [id]}}, "
                     f"schedule: '{i % 60} * * * *'}}")
    (tmp_path / "p.yaml").write_text("\n".join(lines))
    defs = build_definitions(load_project(tmp_path))
    assert len(defs.resolve_asset_graph().get_all_asset_keys()) == 2000  # 1000 syncs + sources
    assert len(list(defs.schedules or [])) == 1000
    # every job comes resolved against its neighbours: none left for Dagster to resolve
    # against all 2,000 assets
    assert all(isinstance(job, dg.JobDefinition) for job in defs.jobs or [])
    job_graph = defs.resolve_job_def("sync__s7__job").asset_layer.asset_graph
    assert job_graph.get_all_asset_keys() == {dg.AssetKey(["objectstack", "c7"]),
                                              dg.AssetKey(["objectstack", "t7"])}


def test_a_sync_job_holds_its_own_asset_and_its_source_alone(demo: Path) -> None:
    """Each job's graph is its sync's assets and the record set it reads, not every source of
    the project (which made loading 1,000 syncs take 24 s, each job resolved against all)."""
    defs = build_definitions(demo)
    graph = defs.resolve_asset_graph()
    for job_name in ("sync__orders_realtime__job", "sync__accounts_mirror__job"):
        keys = defs.resolve_job_def(job_name).asset_layer.asset_graph.get_all_asset_keys()
        written = {k for k in keys if graph.get(k).is_executable}
        read = keys - written
        assert len(written) == 1 and len(read) == 1, (job_name, keys)
        assert graph.get(next(iter(written))).parent_keys == read


def test_notifier_reads_credentials_from_the_environment_only() -> None:
    notifier = SmtpNotifier()
    assert "password" not in repr(notifier).replace("password_env", "")


@pytest.fixture
def smtp_server() -> object:
    """A real SMTP server on 127.0.0.1 that keeps what it receives."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    class Inbox(Message):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[object] = []

        def handle_message(self, message: object) -> None:
            self.messages.append(message)

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


def test_a_partial_run_emails_the_notify_addresses(
    demo: Path, smtp_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (demo / "syncs" / "contacts.yaml").read_text().replace(
        "errorHandling: {onValidationError: skip, onSyncError: retry}",
        "errorHandling: {onValidationError: skip, onSyncError: retry, "
        "notifyOnError: [ops@example.com, crm@example.com]}",
    )
    (demo / "syncs" / "contacts.yaml").write_text(text)
    monkeypatch.setenv("SYNC_ASSETS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SYNC_ASSETS_SMTP_PORT", str(smtp_server.port))  # type: ignore[attr-defined]
    result = materialize(build_definitions(demo), ["warehouse", "crm_contacts"])
    assert result.success
    (mail,) = smtp_server.messages  # type: ignore[attr-defined]
    assert mail["To"] == "ops@example.com, crm@example.com"
    assert mail["Subject"] == "[sync-assets] contacts_to_warehouse partial"
    body = mail.get_payload(decode=True).decode()
    assert "errored 9" in body
    assert "code=CAST_ERROR: cannot cast 'n/a' to number" in body


def test_a_completed_run_sends_no_email(
    demo: Path, smtp_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = demo / "syncs" / "orders.yaml"
    text = orders.read_text() + "errorHandling: {notifyOnError: [a@b.c]}\n"
    (demo / "syncs" / "orders.yaml").write_text(text)
    monkeypatch.setenv("SYNC_ASSETS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SYNC_ASSETS_SMTP_PORT", str(smtp_server.port))  # type: ignore[attr-defined]
    assert materialize(build_definitions(demo), ["warehouse", "orders"]).success
    assert smtp_server.messages == []  # type: ignore[attr-defined]


def test_the_component_loads_a_project_from_defs_yaml(demo: Path) -> None:
    from dagster.components.testing import create_defs_folder_sandbox

    from sync_assets import DataSyncComponent

    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.defs_folder_path / "syncs"
        defs_path.mkdir(parents=True)
        (defs_path / "defs.yaml").write_text(
            "type: sync_assets.DataSyncComponent\n"
            f"attributes:\n  project: {demo}\n  timezone: America/New_York\n"
        )
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert isinstance(component, DataSyncComponent)
            schedule = defs.resolve_schedule_def("sync__contacts_to_warehouse__schedule")
            assert schedule.execution_timezone == "America/New_York"
            assert defs.resolve_assets_def(["warehouse", "orders"])


TWO_WAY = """\
objectstack: {url: "sqlite:///os.db"}
connectors:
  sheet: {type: sql, url: "sqlite:///sheet.db"}
syncs:
  - name: contacts_2way
    direction: bidirectional
    conflictResolution: manual
    source: {object: contact}
    destination:
      connectorInstanceId: sheet
      externalResource: rows
      operation: sync
      matchKey: [email]
      mapping: {email: Email, name: Name}
"""


def test_a_bidirectional_sync_materializes_both_sides_in_one_run(tmp_path: Path) -> None:
    os_db = sa.create_engine(f"sqlite:///{tmp_path}/os.db")
    with os_db.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT, name TEXT)"))
        conn.execute(sa.text("INSERT INTO contact VALUES (1, 'a@x.io', 'Ann')"))
    (tmp_path / "p.yaml").write_text(TWO_WAY)
    defs = build_definitions(tmp_path)
    result = materialize(defs, ["sheet", "rows"])
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert keys == {"sheet/rows", "objectstack/contact"}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"sync_completed": True, "no_open_conflicts": True}
    # a conflict left open by `manual` fails the conflicts check
    sheet = sa.create_engine(f"sqlite:///{tmp_path}/sheet.db")
    with sheet.begin() as conn:
        conn.execute(sa.text("UPDATE rows SET Name = 'Anna' WHERE Email = 'a@x.io'"))
    with os_db.begin() as conn:
        conn.execute(sa.text("UPDATE contact SET name = 'Annie' WHERE id = 1"))
    result = materialize(defs, ["sheet", "rows"])
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"sync_completed": False, "no_open_conflicts": False}
    os_db.dispose()
    sheet.dispose()


def test_each_sync_runs_in_its_own_pool(demo: Path) -> None:
    assets_def = build_definitions(demo).resolve_assets_def(["warehouse", "orders"])
    assert assets_def.op.pool == "sync__orders_realtime"


def test_the_demo_instance_limits_each_sync_to_one_run_at_a_time() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "examples" / "dagster.yaml").read_text())
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": SYNC_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert config["concurrency"]["pools"]["default_limit"] == 1
    with dg.instance_for_test(overrides={"concurrency": config["concurrency"]}) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
