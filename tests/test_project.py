"""Loading projects from disk: files, folders, ${ENV}, and every check beyond the schema."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_assets import SyncConfigError, load_project
from sync_assets.connectors.registry import connector_types

ENV = {"WAREHOUSE_URL": "postgresql://sync:s3cret-pw@db.internal/wh"}
#: the built-in connector types (memory, objectstack, sql, ...) as messages list them
AVAILABLE_TYPES = ", ".join(sorted(connector_types()))

PROJECT = """\
objectstack: {url: "sqlite:///data/objectstack.db"}
connectors:
  warehouse: {type: sql, url: "${WAREHOUSE_URL}"}
syncs:
  - name: contact_to_warehouse
    source: {object: contact, filters: {status: active}}
    destination:
      connectorInstanceId: warehouse
      externalResource: analytics.contacts
      operation: upsert
      mapping: {email: email_address, first_name: first_name}
      matchKey: [email]
    schedule: "0 * * * *"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(tmp_path: Path, *files: tuple[str, str], env: dict[str, str] | None = None) -> str:
    for name, text in files:
        write(tmp_path, name, text)
    with pytest.raises(SyncConfigError) as info:
        load_project(tmp_path, env=ENV if env is None else env)
    return str(info.value).replace(str(tmp_path) + "/", "")


def one_sync(body: str) -> str:
    """A project with the warehouse connector and one sync written in YAML flow style."""
    return (
        "connectors:\n  warehouse: {type: sql, url: 'sqlite:///w.db'}\n"
        f"syncs:\n  - {body}\n"
    )


def test_a_project_file_loads_with_env_expanded_and_paths_resolved(tmp_path: Path) -> None:
    path = write(tmp_path, "project.yaml", PROJECT)
    project = load_project(path, env=ENV)
    assert list(project.syncs) == ["contact_to_warehouse"]
    sync = project.syncs["contact_to_warehouse"]
    assert sync.file == path
    assert sync.config.destination.matchKey == ["email"]
    assert project.connectors["warehouse"].url.get_secret_value() == ENV["WAREHOUSE_URL"]
    assert project.objectstack.url.get_secret_value() == f"sqlite:///{tmp_path}/data/objectstack.db"


def test_connector_urls_are_secret_in_reprs(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, "project.yaml", PROJECT), env=ENV)
    assert "s3cret-pw" not in repr(project)
    assert "s3cret-pw" not in str(project.connectors)


def test_env_default_applies_when_the_variable_is_unset(tmp_path: Path) -> None:
    text = PROJECT.replace("${WAREHOUSE_URL}", "${WAREHOUSE_URL:-sqlite:///fallback.db}")
    project = load_project(write(tmp_path, "p.yaml", text), env={})
    assert project.connectors["warehouse"].url.get_secret_value() == (
        f"sqlite:///{tmp_path}/fallback.db"
    )


def test_double_dollar_writes_a_literal_placeholder(tmp_path: Path) -> None:
    text = PROJECT.replace("label: x", "").replace(
        "    schedule:", "    description: 'costs $${AMOUNT}'\n    schedule:"
    )
    project = load_project(write(tmp_path, "p.yaml", text), env=ENV)
    assert project.syncs["contact_to_warehouse"].config.description == "costs ${AMOUNT}"


def test_a_file_with_one_sync_config_is_a_project_of_one(tmp_path: Path) -> None:
    config = {"name": "contact_sync", "source": {"object": "contact"},
              "destination": {"object": "lead", "operation": "upsert"}}
    write(tmp_path, "contact_sync.json", json.dumps(config))
    project = load_project(tmp_path)
    assert project.syncs["contact_sync"].config.to_spec()["destination"] == {
        "object": "lead", "operation": "upsert"
    }


def test_a_folder_is_one_project(tmp_path: Path) -> None:
    write(tmp_path, "project.yaml", PROJECT)
    write(tmp_path, "syncs/leads.yml", "name: lead_copy\nsource: {object: lead}\n"
          "destination: {object: lead_archive, operation: insert}\n")
    write(tmp_path, ".hidden/ignored.yaml", "not: [valid")
    project = load_project(tmp_path, env=ENV)
    assert sorted(project.syncs) == ["contact_to_warehouse", "lead_copy"]


def test_yaml_dates_stay_strings(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", "name: s\nsource: {object: a}\n"
          "destination: {object: b, operation: insert}\ndescription: 2024-01-31\n")
    assert load_project(tmp_path).syncs["s"].config.description == "2024-01-31"


def test_two_syncs_with_one_name_name_both_files(tmp_path: Path) -> None:
    body = "name: dup\nsource: {object: a}\ndestination: {object: b, operation: insert}\n"
    assert problems(tmp_path, ("a.yaml", body), ("b/b.yaml", "# copy\n" + body)) == (
        "b/b.yaml:2: name: a sync named 'dup' is already defined at a.yaml:1"
    )


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    text = "syncs:\n  - name: a\n    source: {object: a\n    destination: {}\n"
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: (file): invalid YAML: expected ',' or '}', but got ':'"
    )


def test_a_key_written_twice_is_an_error(tmp_path: Path) -> None:
    text = "name: a\nsource: {object: x}\ndestination: {object: y, operation: insert}\nname: b\n"
    assert problems(tmp_path, ("s.yaml", text)) == (
        "s.yaml:4: name: key 'name' appears twice in one mapping (first on line 1)"
    )


def test_an_unset_env_var_is_an_error_without_default(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.yaml", PROJECT), env={}) == (
        "p.yaml:3: connectors.warehouse.url: environment variable WAREHOUSE_URL is not set "
        "(write ${WAREHOUSE_URL:-default} to give a fallback)"
    )


def test_an_unknown_project_key_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.yaml", "sync:\n  - name: a\n")) == (
        "p.yaml:1: sync: unknown key; a project has objectstack, connectors, state, syncs"
    )


def test_an_unknown_connector_type_lists_the_available_ones(tmp_path: Path) -> None:
    text = "connectors:\n  lake: {type: mongo, url: 'mongodb://x'}\n"
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:2: connectors.lake.type: unknown connector type 'mongo'; "
        f"available: {AVAILABLE_TYPES}"
    )


def test_schema_errors_name_file_line_and_path(tmp_path: Path) -> None:
    text = one_sync(
        "{name: Contact-Sync, source: {object: contact},\n"
        "     destination: {object: lead, operation: upsert_contact}, batchSize: 0}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == "\n".join([
        "p.yaml:4: syncs[0].name: must be snake_case: a lowercase letter or _ then lowercase "
        "letters, digits or _ (got 'Contact-Sync')",
        "p.yaml:5: syncs[0].destination.operation: must be one of insert, update, upsert, "
        "delete, sync (got 'upsert_contact')",
        "p.yaml:5: syncs[0].batchSize: must be at least 1 (got 0)",
    ])


def test_an_endpoint_needs_an_object_or_a_connector(tmp_path: Path) -> None:
    text = one_sync("{name: s, source: {}, destination: {object: lead, operation: insert}}")
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].source: needs `object` (an ObjectStack object) or "
        "`connectorInstanceId` (a connector instance defined under `connectors:`)"
    )


def test_an_endpoint_cannot_have_both_object_and_connector(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a, connectorInstanceId: warehouse, externalResource: t},"
        " destination: {object: lead, operation: insert}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].source: has both `object` and `connectorInstanceId`; "
        "set only one of them"
    )


def test_an_undefined_connector_instance_lists_the_defined_ones(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {connectorInstanceId: warehose,\n"
        "     externalResource: t, operation: insert}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].destination.connectorInstanceId: connector instance 'warehose' "
        "is not defined; defined: warehouse"
    )


def test_a_connector_endpoint_needs_an_external_resource(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {connectorInstanceId: warehouse,"
        " operation: insert}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].destination.externalResource: is required with connector "
        "instance 'warehouse': the table to use, optionally as schema.table"
    )


def test_a_schedule_must_be_valid_cron(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert},\n"
        "     schedule: '0 * * *'}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].schedule: '0 * * *' is not a valid cron expression: use five "
        "fields 'minute hour day-of-month month day-of-week', like '0 * * * *' (hourly)"
    )


@pytest.mark.parametrize("cron, message", [
    ("0 25 * * *", "hour 25 is out of range 0-23"),
    ("60 * * * *", "minute 60 is out of range 0-59"),
    ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
    ("0 0 1-40 * *", "day-of-month 40 is out of range 1-31"),
    ("0 0 * 13 *", "month 13 is out of range 1-12 (or JAN-DEC)"),
    ("0 0 * * 8", "day-of-week 8 is out of range 0-7 (0 and 7 are Sunday, or SUN-SAT)"),
    ("*/61 * * * *", "minute step 61 is out of range 1-59"),
    ("*/0 * * * *", "minute step 0 is out of range 1-59"),
    ("0 */24 * * *", "hour step 24 is out of range 1-23"),
    ("0 0 * FOO *", "month 'FOO' is not valid: use 1-12 (or JAN-DEC), a range (like 1-2), a "
                    "list (like 1,3) or a step (like */2)"),
    ("61 25 * * *", "minute 61 is out of range 0-59; hour 25 is out of range 0-23"),
])
def test_a_cron_field_out_of_range_is_named_with_its_range(
        tmp_path: Path, cron: str, message: str) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert},\n"
        f"     schedule: '{cron}'}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        f"p.yaml:5: syncs[0].schedule: '{cron}' is not a valid cron expression: {message}")


@pytest.mark.parametrize("cron", ["0 2 * * *", "*/15 * * * *", "0 9-17/2 * * MON-FRI",
                                  "30 0 1,15 jan,jul *", "0 0 L * *", "0 0 * * 7"])
def test_cron_expressions_croniter_and_dagster_take_are_valid(tmp_path: Path, cron: str
                                                              ) -> None:
    text = one_sync("{name: s, source: {object: a}, destination: {object: b, operation: "
                    f"insert}}, schedule: '{cron}'}}")
    write(tmp_path, "p.yaml", text)
    assert load_project(tmp_path).syncs["s"].config.schedule.source == cron  # type: ignore[union-attr]


def test_a_cron_expression_with_seconds_is_refused_as_dagster_refuses_it(
        tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert},\n"
        "     schedule: '0 0 * * * *'}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].schedule: '0 0 * * * *' is not a valid cron expression: use five "
        "fields 'minute hour day-of-month month day-of-week', like '0 * * * *' (hourly)")


def test_a_cron_expression_naming_a_date_that_never_comes_is_refused(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert},\n"
        "     schedule: '0 0 30 2 *'}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].schedule: '0 0 30 2 *' never runs: its day-of-month does not "
        "occur in its months (like the 30th of February)")


def test_a_schedule_in_another_dialect_cannot_schedule(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert},\n"
        "     schedule: {dialect: cel, source: 'true'}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].schedule.dialect: a sync is scheduled by a cron expression; "
        "dialect 'cel' cannot schedule (use a string like '0 * * * *')"
    )


def test_two_mappings_to_one_target_are_an_error(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: insert,\n"
        "     mapping: [{source: first, target: name}, {source: last, target: name}]}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].destination.mapping[1].target: 'name' is already the target "
        "of mapping[0].target"
    )


def test_a_match_key_must_resolve_to_a_mapped_field(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: upsert,\n"
        "     mapping: {email: email_address}, matchKey: [emial]}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].destination.matchKey[0]: 'emial' is not a mapped field; use a "
        "source field or a destination field of the mapping (email_address)"
    )


def test_a_match_key_naming_two_fields_is_ambiguous(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: upsert,\n"
        "     mapping: {id: external_id, code: id}, matchKey: [id]}}"
    )
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:5: syncs[0].destination.matchKey[0]: 'id' is ambiguous: it is a source field "
        "mapped to 'external_id' and also a destination field; name the destination field"
    )


def test_a_match_key_through_the_mapping_resolves(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a}, destination: {object: b, operation: upsert,\n"
        "     mapping: {email: email_address}, matchKey: [email]}}"
    )
    write(tmp_path, "p.yaml", text)
    assert load_project(tmp_path).syncs["s"].config.destination.matchKey == ["email"]


def test_an_unknown_filter_operator_is_an_error_at_load_time(tmp_path: Path) -> None:
    text = one_sync(
        "{name: s, source: {object: a, filters: {amount: {$gtt: 5}}},\n"
        "     destination: {object: b, operation: insert}}"
    )
    message = problems(tmp_path, ("p.yaml", text))
    assert message.startswith("p.yaml:4: syncs[0].source.filters: at amount: unknown operator")
    assert "$gtt" in message and "$gte" in message


def test_a_secret_from_the_environment_never_appears_in_an_error(tmp_path: Path) -> None:
    text = one_sync("{name: '${SYNC_NAME}', source: {object: a},"
                    " destination: {object: b, operation: insert}}")
    message = problems(tmp_path, ("p.yaml", text), env={"SYNC_NAME": "Hunter2-Secret"})
    assert "Hunter2" not in message
    assert message == (
        "p.yaml:4: syncs[0].name: must be snake_case: a lowercase letter or _ then lowercase "
        "letters, digits or _ (got '***')"
    )


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    bad = "name: s\nsource: {}\ndestination: {object: b, operation: insert}\n"
    message = problems(tmp_path, ("a.yaml", bad), ("b.yaml", bad.replace("name: s", "name: t")))
    assert message.count("needs `object`") == 2


def test_a_misspelt_sync_key_is_refused_with_the_key_meant(tmp_path: Path) -> None:
    text = one_sync("{name: s, source: {object: a}, destination: {object: b, operation: "
                    "upsert, matchkey: [email]}}")
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].destination.matchkey: is not a protocol key (the official parser "
        "would drop it silently, so it is refused); did you mean `matchKey`?")


def test_an_unknown_key_inside_a_transform_is_refused_with_the_keys_allowed(
        tmp_path: Path) -> None:
    text = one_sync("{name: s, source: {object: a}, destination: {object: b, operation: "
                    "insert, mapping: [{source: x, target: y, transform: {type: cast, "
                    "targetType: date, format: iso}}]}}")
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].destination.mapping[0].transform.format: is not a protocol key "
        "(the official parser would drop it silently, so it is refused); keys here: type, "
        "targetType")


def test_a_connector_key_says_which_protocol_keys_to_write_and_lists_the_instances(
        tmp_path: Path) -> None:
    text = one_sync("{name: s, source: {connector: warehouse, externalResource: t},\n"
                    "     destination: {object: b, operation: insert}}")
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].source.connector: is not a protocol key: the official parser "
        "drops it, leaving the source without a system, so it is refused; write source: "
        "{connectorInstanceId: warehouse, externalResource: <table or object>} with an "
        "instance defined under `connectors:` (defined: warehouse), or source: {object: "
        "<name>} for an ObjectStack object")


def test_a_broken_project_section_does_not_hide_the_problems_of_the_syncs(
        tmp_path: Path) -> None:
    text = ("objectstack: {url: 'sqlite:///os.db', bogus: 1}\n"
            "connectors:\n  warehouse: {type: sql, url: 'sqlite:///w.db'}\n"
            "syncs:\n  - {name: s, source: {object: a}, destination: {object: b, "
            "operation: upsert, matchKey: [id], mapping: {email: email}}}\n")
    assert problems(tmp_path, ("p.yaml", text)) == "\n".join([
        "p.yaml:1: objectstack.bogus: unknown key (check the spelling)",
        "p.yaml:5: syncs[0].destination.matchKey[0]: 'id' is not a mapped field; use a source "
        "field or a destination field of the mapping (email)",
    ])


def test_connectors_that_cannot_be_read_do_not_make_every_instance_undefined(
        tmp_path: Path) -> None:
    text = ("connectors: [warehouse]\n"
            "syncs:\n  - {name: s, source: {object: a}, destination: {connectorInstanceId: "
            "warehouse, externalResource: t, operation: upsert, matchKey: [id], "
            "mapping: {email: email}}}\n")
    assert problems(tmp_path, ("p.yaml", text)) == "\n".join([
        "p.yaml:1: connectors: must be an object (got list)",
        "p.yaml:3: syncs[0].destination.matchKey[0]: 'id' is not a mapped field; use a source "
        "field or a destination field of the mapping (email)",
    ])


# -- keys that cannot apply to a sync's direction or systems ------------------------------


def test_delete_cannot_run_bidirectionally(tmp_path: Path) -> None:
    body = ("{name: a, direction: bidirectional, source: {object: contact}, destination: "
            "{connectorInstanceId: warehouse, externalResource: c, operation: delete, "
            "matchKey: [email]}}")
    assert problems(tmp_path, ("p.yaml", one_sync(body))) == (
        "p.yaml:4: syncs[0].destination.operation: delete cannot run bidirectionally (it "
        "would delete on one side what the other holds); use sync to propagate deletes both "
        "ways, or direction push or pull"
    )


def test_an_append_into_a_system_without_transactions_is_refused(tmp_path: Path) -> None:
    text = ("connectors:\n  crm: {type: objectstack, url: 'http://127.0.0.1:9', apiKey: k}\n"
            "syncs:\n  - {name: a, source: {object: contact}, destination: "
            "{connectorInstanceId: crm, externalResource: contact, operation: insert}}\n")
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:4: syncs[0].destination.matchKey: insert without matchKey appends, which the "
        "system written to cannot make exactly-once (it keeps no sync state in its own "
        "transactions): give a matchKey, e.g. an external id or an email"
    )


def test_an_append_into_a_database_is_fine(tmp_path: Path) -> None:
    body = ("{name: a, source: {object: contact}, destination: {connectorInstanceId: "
            "warehouse, externalResource: c, operation: insert}}")
    write(tmp_path, "p.yaml", one_sync(body))
    assert list(load_project(tmp_path, env=ENV).syncs) == ["a"]


def test_a_pull_says_its_source_filters_have_no_effect(tmp_path: Path) -> None:
    body = ("{name: a, direction: pull, source: {object: contact, filters: {status: active}}, "
            "destination: {connectorInstanceId: warehouse, externalResource: c, "
            "operation: upsert, matchKey: [email]}, changeTrackingField: updated_at}")
    write(tmp_path, "p.yaml", one_sync(body))
    notices = [(n.path, n.message) for n in load_project(tmp_path, env=ENV).notices]
    assert notices == [("syncs[0].source.filters", "source.filters has no effect: this sync "
                        "reads the destination side and writes the source side")]


def test_a_pull_whose_cursor_has_no_counterpart_says_it_reads_all(tmp_path: Path) -> None:
    body = ("{name: a, direction: pull, source: {object: contact}, destination: "
            "{connectorInstanceId: warehouse, externalResource: c, operation: upsert, "
            "matchKey: [email], mapping: {email: Email}}, changeTrackingField: updated_at}")
    write(tmp_path, "p.yaml", one_sync(body))
    notices = [(n.path, n.message) for n in load_project(tmp_path, env=ENV).notices]
    assert notices == [("syncs[0].changeTrackingField", "'updated_at' has no counterpart on "
                        "the destination side (a field mapped by a rename), so every run "
                        "reads the destination whole and writes only what changed")]


# -- bounded loading -----------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.yaml", alias_bomb(9))) == (
        "p.yaml:1: a5[1][7][8][6][5][8]: holds more than 200,000 values (YAML aliases repeat "
        "what they name; a project needs far fewer)"
    )


def test_a_deeply_nested_yaml_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert problems(tmp_path / "a", ("p.yaml", "syncs: " + "[" * 2000 + "]" * 2000 + "\n")) == (
        "p.yaml:1: (file): invalid YAML: nested too deeply (64 levels are allowed)")
    assert problems(tmp_path / "b", ("p.yaml", "syncs: " + "[" * 80 + "]" * 80 + "\n")) == (
        "p.yaml:1: syncs" + "[0]" * 64 + ": is nested deeper than 64 levels")


def test_a_deeply_nested_json_file_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.json", '{"syncs": ' + "[" * 5000 + "]" * 5000 + "}")) == (
        "p.json:1: (file): invalid JSON: nested too deeply (64 levels are allowed)")


def test_a_connector_type_that_is_not_a_name_is_an_error(tmp_path: Path) -> None:
    text = "connectors:\n  wh: {type: [sql], url: 'sqlite:///w.db'}\n"
    assert problems(tmp_path, ("p.yaml", text)) == (
        "p.yaml:2: connectors.wh.type: must be the name of a connector type; available: "
        f"{AVAILABLE_TYPES}")


# -- malformed input: one `file:line: path: message` each, never a traceback (#13 defect 6) --


def sync_with(extra: str = "", destination: str = "") -> str:
    """`one_sync` with keys added to the sync and to its destination."""
    return one_sync("{name: s, source: {object: contact}, destination: {connectorInstanceId: "
                    f"warehouse, externalResource: c, operation: upsert, matchKey: [email]"
                    f"{destination}}}{extra}}}")


@pytest.mark.parametrize("char, code", [("\x00", "0000"), ("\x07", "0007"), ("\x1b", "001B")])
def test_a_control_character_in_yaml_text_names_its_line(
        tmp_path: Path, char: str, code: str) -> None:
    assert problems(tmp_path, ("p.yaml", f"syncs:\n  - name: a{char}b\n")) == (
        f"p.yaml:2: (file): invalid YAML: a control character (U+{code}) is not allowed in "
        "YAML text")


def test_a_nul_or_a_lone_surrogate_in_a_value_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path / "a", ("p.yaml", sync_with(', label: "a\\0b"'))) == (
        "p.yaml:4: syncs[0].label: contains a NUL character (\\0), which text in a database "
        "cannot hold")
    assert problems(tmp_path / "b", ("p.yaml", sync_with(', label: "\\ud800"'))) == (
        "p.yaml:4: syncs[0].label: contains a lone surrogate (\\ud800), which is not a "
        "character and cannot be written as UTF-8")


@pytest.mark.parametrize("number, message", [
    ("9" * 5000, "is a number written with more than 100 characters (quote it to keep it as "
                 "text)"),
    ("1" + ":59" * 40, "is a number written with more than 100 characters (quote it to keep "
                       "it as text)"),  # YAML 1.1's base 60
    (str(2**64), "is a whole number beyond 64 bits, which no database column holds (quote it "
                 "to keep it as text)"),
])
def test_huge_numbers_are_refused_before_they_are_read(
        tmp_path: Path, number: str, message: str) -> None:
    assert problems(tmp_path, ("p.yaml", sync_with(f", metadata: {{n: {number}}}"))) == (
        f"p.yaml:4: syncs[0].metadata.n: {message}")


def test_yaml_values_that_json_has_not_are_refused(tmp_path: Path) -> None:
    for i, (value, message) in enumerate([
        ("!!binary aGk=", "is a YAML !!binary value, which a config cannot hold: use text, a "
                          "number, true, false or null"),
        ("!!timestamp 2024-01-31", "is a YAML !!timestamp value, which a config cannot hold: "
                                   "use text, a number, true, false or null"),
        ("!!int abc", "is not a valid !!int value"),
        ("{? [a, b] : 1}", "has a list as a key; a key must be text, a number, true, false or "
                           "null"),
    ]):
        folder = tmp_path / str(i)
        folder.mkdir()
        where = "syncs[0].metadata" + ("" if value.startswith("{") else ".n")
        shown = value if value.startswith("{") else f"{{n: {value}}}"
        assert problems(folder, ("p.yaml", sync_with(f", metadata: {shown}"))) == (
            f"p.yaml:4: {where}: {message}")


def test_yaml_merge_keys_let_a_mapping_override_what_it_merges(tmp_path: Path) -> None:
    text = ("connectors:\n  warehouse: {type: sql, url: 'sqlite:///w.db'}\n"
            "syncs:\n  - name: s\n    source: {object: contact}\n"
            "    destination: &d {connectorInstanceId: warehouse, externalResource: c, "
            "operation: upsert, matchKey: [email]}\n"
            "  - name: t\n    source: {object: contact}\n"
            "    destination: {<<: *d, operation: insert}\n")
    write(tmp_path, "p.yaml", text)
    syncs = load_project(tmp_path, env=ENV).syncs
    assert syncs["t"].config.destination.operation == "insert"
    assert syncs["t"].config.destination.matchKey == ["email"]
    twice = text.replace("operation: insert}", "operation: insert, operation: sync}")
    assert problems(tmp_path, ("p.yaml", twice)) == (
        "p.yaml:9: syncs[1].destination.operation: key 'operation' appears twice in one "
        "mapping (first on line 9)")


JSON_SYNC = ('{\n  "name": "s",\n  "batchSize": %s,\n  "source": {"object": "contact"},\n'
             '  "destination": {"object": "c", "operation": "upsert", "matchKey": ["email"]}\n}\n')


def test_json_problems_name_their_lines_and_a_key_written_twice(tmp_path: Path) -> None:
    for i, (text, expected) in enumerate([
        (JSON_SYNC % '"ten"', "p.json:3: batchSize: must be a whole number (got string)"),
        (JSON_SYNC.replace('"name": "s",', '"name": "s",\n  "name": "t",') % 5,
         "p.json:3: name: key 'name' appears twice in one object (first on line 2)"),
        (JSON_SYNC % ("9" * 5000), "p.json:3: batchSize: is a number written with more than "
                                   "100 characters (quote it to keep it as text)"),
        (JSON_SYNC % '"a\\u0000"', "p.json:3: batchSize: contains a NUL character (\\0), "
                                   "which text in a database cannot hold"),
        ('{"syncs": ' + "[" * 80 + "]" * 80 + "}",
         "p.json:1: syncs" + "[0]" * 64 + ": is nested deeper than 64 levels"),
    ]):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert problems(folder, ("p.json", text)) == expected


def test_engine_options_are_tried_when_the_project_loads(tmp_path: Path) -> None:
    text = "connectors:\n  wh: {type: sql, url: 'sqlite:///w.db', engineOptions: %s}\n"
    assert problems(tmp_path / "a", ("p.yaml", text % "{pool_size: 5, bogus: 1}")) == (
        "p.yaml:2: connectors.wh.engineOptions.bogus: 'bogus' is not an option of "
        "SQLAlchemy's create_engine() for this database (SQLiteDialect_pysqlite/QueuePool/"
        "Engine)")
    assert problems(tmp_path / "b", ("p.yaml", text % "{connect_args: {bogus: 1}}")) == (
        "p.yaml:2: connectors.wh.engineOptions: are refused by SQLAlchemy: TypeError: 'bogus' "
        "is an invalid keyword argument for Connection()")


def test_expressions_compile_when_the_project_loads(tmp_path: Path) -> None:
    rule = ", validation: {custom: [{name: r, condition: '%s', message: m}]}"
    for i, (condition, message) in enumerate([
        ("value +", "CEL syntax error at line 1, column 7: unexpected end of expression"),
        ("(" * 2000 + "true" + ")" * 2000, "is nested too deeply to compile; write a flatter "
                                           "expression"),
        ("1 + " * 3000 + "1 > 0", "is longer than 10,000 characters; write a shorter "
                                  "expression"),
    ]):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert problems(folder, ("p.yaml", sync_with(rule % condition))) == (
            f"p.yaml:4: syncs[0].validation.custom[0].condition: {message}")


def test_an_objectstack_server_url_must_parse_and_name_a_host(tmp_path: Path) -> None:
    assert problems(tmp_path / "a", ("p.yaml", "objectstack: {url: 'http://[::1', apiKey: k}\n")
                    ) == "p.yaml:1: objectstack.url: is not a valid URL: Invalid port: ':1'"
    assert problems(tmp_path / "b", ("p.yaml", "connectors:\n  os: {type: objectstack, url: "
                                         "'https://', apiKey: k}\n")) == (
        "p.yaml:2: connectors.os.url: names no host; write it like "
        "https://objectstack.example.com")


def test_an_empty_field_name_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.yaml", sync_with(destination=", mapping: {email: ''}"))) == (
        "p.yaml:4: syncs[0].destination.mapping.email: must not be empty: name a field")


def test_an_environment_value_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    text = "connectors:\n  wh: {type: sql, url: '${WH_URL}'}\n"
    # os.environ holds bytes that are not UTF-8 as lone surrogates
    assert problems(tmp_path, ("p.yaml", text), env={"WH_URL": "sqlite:///\udcffx.db"}) == (
        "p.yaml:2: connectors.wh.url: environment variable WH_URL holds bytes that are not "
        "UTF-8 text")


def test_a_problem_is_one_line_whatever_its_key_holds(tmp_path: Path) -> None:
    assert problems(tmp_path, ("p.yaml", '"sy\\nncs\\e[31m": []\n')) == (
        "p.yaml:1: sy\\nncs\\x1b[31m: unknown key; a project has objectstack, connectors, "
        "state, syncs")


def test_checking_stops_after_1000_problems(tmp_path: Path) -> None:
    found = problems(tmp_path, ("p.yaml", "syncs: [" + "0, " * 1500 + "0]\n")).splitlines()
    assert len(found) == 1001
    assert found[-2:] == ["p.yaml:1: syncs[999]: must be an object (got integer)",
                          "(project): checking stopped after 1,000 problems; fix these first"]


def test_a_database_url_that_does_not_parse_is_an_error_that_never_shows_it(
        tmp_path: Path) -> None:
    message = ("is not a database URL: write it as dialect://user@host/database, e.g. "
               "postgresql://sync@db.example.com/warehouse or sqlite:///warehouse.db")
    assert problems(tmp_path / "a", ("p.yaml", "connectors:\n  wh: {type: sql, url: "
                                               "'${WH_URL}'}\n"), env={"WH_URL": "S3cr3t-pw"}
                    ) == f"p.yaml:2: connectors.wh.url: {message}"
    assert problems(tmp_path / "b", ("p.yaml", "state: {url: 'postgresql://u:S3cr3t-pw@db:"
                                               "port/state'}\n")) == (
        f"p.yaml:1: state.url: {message}")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False) | st.text(st.characters(exclude_characters="\x00")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(st.characters(exclude_characters="\x00"), max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, indent=st.sampled_from([None, 0, 2, "\t"]),
       ascii_only=st.booleans())
def test_json_files_read_as_json_loads_reads_them(
        value: object, indent: int | str | None, ascii_only: bool) -> None:
    """The line-keeping JSON reader builds what json.loads builds, for any layout."""
    from sync_assets.project.yaml_lines import read_config_file

    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.json"
        path.write_text(text, encoding="utf-8")
        data, lines = read_config_file(path)
    assert data == json.loads(text)
    assert lines[()] == 1 + text[: len(text) - len(text.lstrip())].count("\n")
