"""One test per behaviour of the official parser that the shipped JSON Schema cannot express.

PROTOCOL_NOTES.md part A lists them: defaults and where they apply, unknown keys dropped,
nulls, expression shorthands, safe integers, UTC-only datetimes, `re.fullmatch` names. Every
expectation here is hard-coded: the output `to_spec()` must return, or the exact
`str(SyncConfigError)`. `test_every_expectation_matches_the_official_parser` checks all of
them against the official parser (tests/oracle) in one batch, so the hard-coded outputs stay
the official ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from sync_assets.spec import (
    SyncConfigError,
    parse_execution_result,
    parse_sync_config,
)

from oracle_client import Kind, get_oracle, same_json

Json = Any


@dataclass(frozen=True)
class Case:
    kind: Kind
    data: Json
    output: Json = None  # the exact to_spec() when accepted
    error: str | None = None  # the exact str(SyncConfigError) when rejected


CASES: list[Case] = []


def accepted(kind: Kind, data: Json, output: Json) -> Case:
    CASES.append(case := Case(kind, data, output=output))
    return case


def rejected(kind: Kind, data: Json, error: str) -> Case:
    CASES.append(case := Case(kind, data, error=error))
    return case


def _parse(case: Case) -> Any:
    parse = parse_sync_config if case.kind == "config" else parse_execution_result
    return parse(case.data)


def check(case: Case) -> None:
    if case.error is None:
        out = _parse(case).to_spec()
        assert out == case.output
        # `==` equates True with 1 and 1.0 with 1; the JSON text must match exactly too.
        assert json.dumps(out, sort_keys=True) == json.dumps(case.output, sort_keys=True)
    else:
        with pytest.raises(SyncConfigError) as caught:
            _parse(case)
        assert str(caught.value) == case.error
        assert all(p.path and p.message for p in caught.value.problems)


def cfg(**extra: Json) -> dict[str, Json]:
    """The spec's minimal valid config, with `extra` keys set (or replaced)."""
    return {"name": "contact_sync", "source": {}, "destination": {"operation": "upsert"}, **extra}


TOP_DEFAULTS = {
    "direction": "push",
    "syncMode": "incremental",
    "conflictResolution": "latest_wins",
    "enabled": True,
    "batchSize": 100,
}


def out(**extra: Json) -> dict[str, Json]:
    """The official output of `cfg(**extra)` when `extra` needs no rewriting."""
    return {**cfg(), **TOP_DEFAULTS, **extra}


def mapped(*items: Json) -> dict[str, Json]:
    return {"operation": "upsert", "mapping": list(items)}


def run(**extra: Json) -> dict[str, Json]:
    """A minimal valid SyncExecutionResult, with `extra` keys set."""
    return {
        "id": "run-1",
        "syncName": "contact_sync",
        "status": "completed",
        "startedAt": "2024-01-31T12:00:00Z",
        **extra,
    }


ZERO_STATS = {
    "recordsProcessed": 0,
    "recordsInserted": 0,
    "recordsUpdated": 0,
    "recordsDeleted": 0,
    "recordsSkipped": 0,
    "recordsErrored": 0,
    "conflictsDetected": 0,
    "conflictsResolved": 0,
}
NOT_NULL = "must not be null (leave the key out instead)"
SNAKE = "must be snake_case: a lowercase letter or _ then lowercase letters, digits or _"
UTC = "must be an ISO-8601 UTC time ending in Z, like 2024-01-31T12:00:00Z"
NEEDS_SOURCE_OR_AST = "an expression needs at least one of `source` or `ast`"


# --- The spec's own examples ----------------------------------------------------------------

SPEC_EXAMPLE = accepted(
    "config",
    {"name": "contact_sync", "source": {}, "destination": {"operation": "upsert"}},
    {
        "name": "contact_sync",
        "source": {},
        "destination": {"operation": "upsert"},
        "direction": "push",
        "syncMode": "incremental",
        "conflictResolution": "latest_wins",
        "enabled": True,
        "batchSize": 100,
    },
)

HEADER_EXAMPLE = rejected(
    "config",
    {
        "name": "salesforce_contact_sync",
        "label": "Salesforce Contact Sync",
        "source": {"object": "contact", "filters": {"status": "active"}},
        "destination": {
            "connector": "salesforce",
            "operation": "upsert_contact",
            "mapping": {"first_name": "FirstName", "last_name": "LastName", "email": "Email"},
        },
        "syncMode": "incremental",
        "schedule": "0 * * * *",
    },
    "destination.operation: must be one of insert, update, upsert, delete, sync "
    "(got 'upsert_contact')",
)


def test_spec_example_is_valid_and_gets_the_top_level_defaults() -> None:
    check(SPEC_EXAMPLE)


def test_protocol_page_header_example_is_rejected_for_its_operation_only() -> None:
    # `connector` is not a key: dropped silently, so `operation` is the one problem.
    check(HEADER_EXAMPLE)


# --- Unknown keys -----------------------------------------------------------------------------

UNKNOWN_TOP = accepted("config", cfg(connector="salesforce", zz={"a": 1}), out())

UNKNOWN_NESTED = accepted(
    "config",
    cfg(
        source={"object": "contact", "zz": 1},
        destination={
            "operation": "upsert",
            "zz": 1,
            "mapping": [
                {"source": "a", "target": "b", "zz": 1,
                 "transform": {"type": "cast", "targetType": "date", "zz": 1}},
            ],
        },
        schedule={"dialect": "cron", "source": "0 * * * *", "zz": 1,
                  "meta": {"rationale": "hourly", "zz": 1}},
        retry={"maxAttempts": 1, "zz": 1},
        validation={"zz": 1, "custom": [{"name": "n", "condition": "x", "message": "m", "zz": 1}]},
        errorHandling={"onSyncError": "fail", "zz": 1},
        optimization={"cacheEnabled": False, "zz": 1},
        audit={"logLevel": "debug", "zz": 1},
    ),
    out(
        source={"object": "contact"},
        destination={
            "operation": "upsert",
            "mapping": [
                {"source": "a", "target": "b", "transform": {"type": "cast", "targetType": "date"}},
            ],
        },
        schedule={"dialect": "cron", "source": "0 * * * *", "meta": {"rationale": "hourly"}},
        retry={"maxAttempts": 1, "backoffMs": 30000},
        validation={"custom": [{"name": "n", "condition": {"dialect": "cel", "source": "x"},
                                "message": "m"}]},
        errorHandling={"onValidationError": "skip", "onSyncError": "fail"},
        optimization={"parallelBatches": False, "cacheEnabled": False,
                      "compressionEnabled": False},
        audit={"logLevel": "debug", "retainLogsForDays": 30, "trackChanges": True},
    ),
)  # fmt: skip


def test_unknown_top_level_keys_are_dropped() -> None:
    check(UNKNOWN_TOP)


def test_unknown_nested_keys_are_dropped_at_every_level() -> None:
    check(UNKNOWN_NESTED)


# --- Defaults -----------------------------------------------------------------------------------

RETRY_EMPTY = accepted("config", cfg(retry={}), out(retry={"maxAttempts": 3, "backoffMs": 30000}))
RETRY_PARTIAL = accepted(
    "config", cfg(retry={"maxAttempts": 0}), out(retry={"maxAttempts": 0, "backoffMs": 30000})
)
NESTED_EMPTY = accepted(
    "config",
    cfg(errorHandling={}, optimization={}, audit={}, validation={}),
    out(
        errorHandling={"onValidationError": "skip", "onSyncError": "retry"},
        optimization={"parallelBatches": False, "cacheEnabled": True, "compressionEnabled": False},
        audit={"logLevel": "info", "retainLogsForDays": 30, "trackChanges": True},
        validation={},
    ),
)
EXPLICIT_DEFAULTS_KEPT = accepted(
    "config",
    cfg(direction="pull", syncMode="full", conflictResolution="manual", enabled=False,
        batchSize=5),
    out(direction="pull", syncMode="full", conflictResolution="manual", enabled=False,
        batchSize=5),
)  # fmt: skip


def test_nested_defaults_fill_an_empty_retry() -> None:
    check(RETRY_EMPTY)


def test_nested_defaults_fill_only_the_missing_keys() -> None:
    check(RETRY_PARTIAL)


def test_nested_defaults_fill_every_empty_parent() -> None:
    check(NESTED_EMPTY)


def test_absent_parents_stay_absent() -> None:
    # No retry, errorHandling, optimization or audit key appears when the input has none.
    output = parse_sync_config(SPEC_EXAMPLE.data).to_spec()
    assert not {"retry", "errorHandling", "optimization", "audit", "validation"} & set(output)


def test_given_values_replace_the_top_level_defaults() -> None:
    check(EXPLICIT_DEFAULTS_KEPT)


# --- Nulls ----------------------------------------------------------------------------------------

NULL_WITH_DEFAULT = [
    rejected("config", cfg(batchSize=None), f"batchSize: {NOT_NULL}"),
    rejected(
        "config",
        cfg(direction=None),
        "direction: must not be null (leave the key out instead)",
    ),
    rejected("config", cfg(enabled=None), "enabled: must not be null (leave the key out instead)"),
    rejected(
        "config",
        cfg(retry={"maxAttempts": None, "backoffMs": None}),
        f"retry.maxAttempts: {NOT_NULL}\nretry.backoffMs: {NOT_NULL}",
    ),
    rejected(
        "config",
        cfg(audit={"logLevel": None, "retainLogsForDays": None, "trackChanges": None}),
        "audit.logLevel: must not be null (leave the key out instead)\n"
        f"audit.retainLogsForDays: {NOT_NULL}\n"
        "audit.trackChanges: must not be null (leave the key out instead)",
    ),
    rejected("result", run(stats={"recordsErrored": None}), f"stats.recordsErrored: {NOT_NULL}"),
]
NULL_OPTIONAL = [
    rejected("config", cfg(label=None), f"label: {NOT_NULL}"),
    rejected("config", cfg(retry=None), f"retry: {NOT_NULL}"),
    rejected("config", cfg(schedule=None), f"schedule: {NOT_NULL}"),
    rejected("config", cfg(metadata=None), f"metadata: {NOT_NULL}"),
    rejected(
        "config",
        cfg(source={"object": None, "fields": None}),
        f"source.object: {NOT_NULL}\nsource.fields: {NOT_NULL}",
    ),
    rejected(
        "config",
        cfg(destination={"operation": "upsert", "mapping": None}),
        f"destination.mapping: {NOT_NULL}",
    ),
    rejected(
        "config",
        cfg(destination=mapped({"source": "a", "target": "b", "transform": None})),
        f"destination.mapping[0].transform: {NOT_NULL}",
    ),
    rejected("result", run(completedAt=None), f"completedAt: {NOT_NULL}"),
    rejected("result", run(durationMs=None), f"durationMs: {NOT_NULL}"),
]
NULL_IN_UNKNOWN_SLOTS = accepted(
    "config",
    cfg(
        source={"filters": None},
        destination=mapped(
            {"source": "a", "target": "b", "defaultValue": None,
             "transform": {"type": "constant", "value": None}},
            {"source": "c", "target": "d", "transform": {"type": "map", "mappings": {"x": None}}},
        ),
        schedule={"dialect": "cron", "ast": None},
        metadata={"owner": None},
    ),
    out(
        source={"filters": None},
        destination=mapped(
            {"source": "a", "target": "b", "transform": {"type": "constant", "value": None},
             "defaultValue": None},
            {"source": "c", "target": "d", "transform": {"type": "map", "mappings": {"x": None}}},
        ),
        schedule={"dialect": "cron", "ast": None},
        metadata={"owner": None},
    ),
)  # fmt: skip


@pytest.mark.parametrize("case", NULL_WITH_DEFAULT, ids=lambda c: c.error.split(":")[0])
def test_explicit_null_is_rejected_where_a_default_applies(case: Case) -> None:
    check(case)


@pytest.mark.parametrize("case", NULL_OPTIONAL, ids=lambda c: c.error.split(":")[0])
def test_explicit_null_is_rejected_for_optional_keys(case: Case) -> None:
    check(case)


def test_null_is_kept_in_filters_default_value_constant_value_ast_and_metadata() -> None:
    check(NULL_IN_UNKNOWN_SLOTS)


# --- Transforms -------------------------------------------------------------------------------

CONSTANT_WITHOUT_VALUE = rejected(
    "config",
    cfg(destination=mapped({"source": "a", "target": "b", "transform": {"type": "constant"}})),
    "destination.mapping[0].transform.value: is required",
)
CONSTANT_FALSY_VALUES = accepted(
    "config",
    cfg(destination=mapped(*[
        {"source": "a", "target": "b", "transform": {"type": "constant", "value": v}}
        for v in (0, "", False, [], {})
    ])),
    out(destination=mapped(*[
        {"source": "a", "target": "b", "transform": {"type": "constant", "value": v}}
        for v in (0, "", False, [], {})
    ])),
)  # fmt: skip


def test_constant_transform_requires_the_value_key() -> None:
    check(CONSTANT_WITHOUT_VALUE)


def test_constant_transform_keeps_falsy_values() -> None:
    check(CONSTANT_FALSY_VALUES)


# --- Expression shorthands and envelopes ----------------------------------------------------

SHORTHANDS = accepted(
    "config",
    cfg(
        schedule="0 * * * *",
        validation={"custom": [{"name": "positive", "condition": "record.amount > 0",
                                "message": "Amount must be positive"}]},
        destination=mapped({"source": "a", "target": "b",
                            "transform": {"type": "javascript",
                                          "expression": "value.toUpperCase()"}}),
    ),
    out(
        schedule={"dialect": "cron", "source": "0 * * * *"},
        validation={"custom": [{"name": "positive",
                                "condition": {"dialect": "cel", "source": "record.amount > 0"},
                                "message": "Amount must be positive"}]},
        destination=mapped({"source": "a", "target": "b",
                            "transform": {"type": "javascript",
                                          "expression": {"dialect": "cel",
                                                         "source": "value.toUpperCase()"}}}),
    ),
)  # fmt: skip
ENVELOPE_KEPT = accepted(
    "config",
    cfg(schedule={"dialect": "template", "source": "{{a}}", "ast": {"k": [1]},
                  "meta": {"generatedBy": "agent"}}),
    out(schedule={"dialect": "template", "source": "{{a}}", "ast": {"k": [1]},
                  "meta": {"generatedBy": "agent"}}),
)  # fmt: skip
AST_NULL_COUNTS = accepted(
    "config",
    cfg(schedule={"dialect": "cel", "ast": None}),
    out(schedule={"dialect": "cel", "ast": None}),
)
ENVELOPE_EMPTY = [
    rejected("config", cfg(schedule={"dialect": "cron"}), f"schedule: {NEEDS_SOURCE_OR_AST}"),
    rejected(
        "config",
        cfg(schedule={"dialect": "cron", "meta": {"rationale": "r"}}),
        f"schedule: {NEEDS_SOURCE_OR_AST}",
    ),
    rejected(
        "config",
        cfg(validation={"custom": [{"name": "n", "condition": {"dialect": "cel"},
                                    "message": "m"}]}),
        f"validation.custom[0].condition: {NEEDS_SOURCE_OR_AST}",
    ),
    rejected(
        "config",
        cfg(destination=mapped({"source": "a", "target": "b",
                                "transform": {"type": "javascript",
                                              "expression": {"dialect": "cel"}}})),
        f"destination.mapping[0].transform.expression: {NEEDS_SOURCE_OR_AST}",
    ),
]  # fmt: skip
EMPTY_STRING_EXPRESSIONS = [
    rejected(
        "config",
        cfg(schedule=""),
        "schedule: must be a non-empty string or an expression object {dialect, source}",
    ),
    rejected(
        "config",
        cfg(validation={"custom": [{"name": "n", "condition": "", "message": "m"}]}),
        "validation.custom[0].condition: must be a non-empty string or an expression object "
        "{dialect, source}",
    ),
    # Reads badly (reported): pydantic's own wording leaks through for an empty `source`.
    rejected(
        "config",
        cfg(schedule={"dialect": "cron", "source": ""}),
        "schedule.source: must not be empty",
    ),
]
UNKNOWN_DIALECT = rejected(
    "config",
    cfg(schedule={"dialect": "js", "source": "x"}),
    "schedule.dialect: must be one of cel, cron, template (got 'js')",
)


def test_string_schedule_becomes_a_cron_envelope_and_conditions_and_expressions_cel() -> None:
    check(SHORTHANDS)


def test_an_envelope_is_kept_as_given() -> None:
    check(ENVELOPE_KEPT)


def test_an_envelope_with_ast_null_counts_as_having_an_ast() -> None:
    check(AST_NULL_COUNTS)


@pytest.mark.parametrize("case", ENVELOPE_EMPTY, ids=lambda c: c.error.split(":")[0])
def test_an_envelope_needs_source_or_ast(case: Case) -> None:
    check(case)


@pytest.mark.parametrize("case", EMPTY_STRING_EXPRESSIONS, ids=lambda c: c.error.split(":")[0])
def test_empty_expression_strings_are_rejected(case: Case) -> None:
    check(case)


def test_dialects_are_cel_cron_and_template_only() -> None:
    check(UNKNOWN_DIALECT)


# --- Integers -----------------------------------------------------------------------------------

MAX_SAFE_OK = accepted(
    "config",
    cfg(retry={"maxAttempts": 9007199254740991}),
    out(retry={"maxAttempts": 9007199254740991, "backoffMs": 30000}),
)
MAX_SAFE_PLUS_ONE = rejected(
    "config",
    cfg(retry={"maxAttempts": 9007199254740992}),
    "retry.maxAttempts: must be at most 9007199254740991 (got 9007199254740992)",
)
BATCH_MAX_OK = accepted("config", cfg(batchSize=10000), out(batchSize=10000))
BATCH_TOO_BIG = rejected(
    "config", cfg(batchSize=10001), "batchSize: must be at most 10000 (got 10001)"
)
BATCH_ZERO = rejected("config", cfg(batchSize=0), "batchSize: must be at least 1 (got 0)")
INTEGRAL_FLOAT = accepted("config", cfg(batchSize=1.0), out(batchSize=1))
NOT_INTEGERS = [
    rejected("config", cfg(batchSize=1.5), "batchSize: must be a whole number (got 1.5)"),
    rejected("config", cfg(batchSize=True), "batchSize: must be a whole number (got boolean)"),
    rejected("config", cfg(batchSize="100"), "batchSize: must be a whole number (got string)"),
    rejected(
        "result",
        run(stats={"recordsProcessed": 1.5}),
        "stats.recordsProcessed: must be a whole number (got 1.5)",
    ),
]
NEGATIVE_BACKOFF = rejected(
    "config", cfg(retry={"backoffMs": -1}), "retry.backoffMs: must be at least 0 (got -1)"
)
RETAIN_ZERO = rejected(
    "config",
    cfg(audit={"retainLogsForDays": 0}),
    "audit.retainLogsForDays: must be at least 1 (got 0)",
)


def test_max_safe_integer_is_accepted() -> None:
    check(MAX_SAFE_OK)


def test_max_safe_integer_plus_one_is_rejected() -> None:
    check(MAX_SAFE_PLUS_ONE)


def test_batch_size_10000_is_accepted() -> None:
    check(BATCH_MAX_OK)


def test_batch_size_10001_is_rejected() -> None:
    check(BATCH_TOO_BIG)


def test_batch_size_0_is_rejected() -> None:
    check(BATCH_ZERO)


def test_an_integral_float_is_an_integer_and_is_emitted_as_int() -> None:
    check(INTEGRAL_FLOAT)
    assert type(parse_sync_config(INTEGRAL_FLOAT.data).to_spec()["batchSize"]) is int


@pytest.mark.parametrize("case", NOT_INTEGERS, ids=["1.5", "true", "string", "stats-1.5"])
def test_fractions_booleans_and_numeric_strings_are_not_integers(case: Case) -> None:
    check(case)


def test_retry_backoff_must_not_be_negative() -> None:
    check(NEGATIVE_BACKOFF)


def test_audit_retention_is_at_least_one_day() -> None:
    check(RETAIN_ZERO)


# --- Names ----------------------------------------------------------------------------------

NAME_TRAILING_NEWLINE = rejected(
    "config", cfg(name="contact_sync\n"), f"name: {SNAKE} (got 'contact_sync\\n')"
)
NAME_ODD = [
    rejected("config", cfg(name="Contact"), f"name: {SNAKE} (got 'Contact')"),
    rejected("config", cfg(name="1a"), f"name: {SNAKE} (got '1a')"),
    rejected("config", cfg(name="a-b"), f"name: {SNAKE} (got 'a-b')"),
    rejected("config", cfg(name=""), f"name: {SNAKE} (got '')"),
    rejected("config", cfg(name="ä"), f"name: {SNAKE} (got 'ä')"),
    rejected("config", cfg(name=" a"), f"name: {SNAKE} (got ' a')"),
]
NAME_UNDERSCORE = accepted("config", cfg(name="_"), out(name="_"))


def test_a_name_with_a_trailing_newline_is_rejected() -> None:
    check(NAME_TRAILING_NEWLINE)


@pytest.mark.parametrize("case", NAME_ODD, ids=lambda c: repr(c.data["name"]))
def test_names_must_be_snake_case(case: Case) -> None:
    check(case)


def test_a_lone_underscore_is_a_name() -> None:
    check(NAME_UNDERSCORE)


# --- Datetimes ----------------------------------------------------------------------------------

UTC_OFFSET = rejected("result", run(startedAt="2024-01-31T12:00:00+00:00"), f"startedAt: {UTC}")
NO_SECONDS = accepted(
    "result", run(startedAt="2024-02-29T00:00Z"), run(startedAt="2024-02-29T00:00Z")
)
FRACTIONS = accepted(
    "result",
    run(startedAt="2024-01-31T12:00:00.123456789Z", completedAt="2024-01-31T12:00:01.5Z"),
    run(startedAt="2024-01-31T12:00:00.123456789Z", completedAt="2024-01-31T12:00:01.5Z"),
)
NOT_A_LEAP_DAY = rejected("result", run(startedAt="2023-02-29T00:00:00Z"), f"startedAt: {UTC}")
BAD_TIMES = [
    rejected("result", run(completedAt="2024-01-31t12:00:00z"), f"completedAt: {UTC}"),
    rejected("result", run(completedAt="2024-01-31T12:00:00z"), f"completedAt: {UTC}"),
    rejected("result", run(completedAt="2024-01-31T24:00:00Z"), f"completedAt: {UTC}"),
    rejected("result", run(completedAt="2024-01-31T12:00:00"), f"completedAt: {UTC}"),
    rejected("result", run(completedAt="2024-01-31T12:00:00Z\n"), f"completedAt: {UTC}"),
    rejected("result", run(completedAt="2024-01-31"), f"completedAt: {UTC}"),
]


def test_a_utc_offset_is_rejected_even_plus_zero() -> None:
    check(UTC_OFFSET)


def test_seconds_are_optional() -> None:
    check(NO_SECONDS)


def test_fractional_seconds_are_accepted() -> None:
    check(FRACTIONS)


def test_february_29_needs_a_leap_year() -> None:
    check(NOT_A_LEAP_DAY)


@pytest.mark.parametrize("case", BAD_TIMES, ids=lambda c: repr(c.data["completedAt"]))
def test_lowercase_24h_local_and_date_only_times_are_rejected(case: Case) -> None:
    check(case)


# --- SyncExecutionResult ----------------------------------------------------------------------

STATS_EMPTY = accepted("result", run(stats={}), run(stats=ZERO_STATS))
STATS_PARTIAL = accepted(
    "result",
    run(stats={"recordsProcessed": 10, "recordsInserted": 7, "recordsSkipped": 3}),
    run(stats={**ZERO_STATS, "recordsProcessed": 10, "recordsInserted": 7, "recordsSkipped": 3}),
)
RESULT_UNKNOWN_KEYS = accepted(
    "result",
    run(zz=1, stats={"recordsErrored": 1, "zz": 1},
        errors=[{"message": "bad email", "recordId": "r1", "field": "email", "code": "E1",
                 "zz": 1}]),
    run(stats={**ZERO_STATS, "recordsErrored": 1},
        errors=[{"message": "bad email", "recordId": "r1", "field": "email", "code": "E1"}]),
)  # fmt: skip
ERROR_WITHOUT_MESSAGE = rejected(
    "result", run(errors=[{"recordId": "r1"}]), "errors[0].message: is required"
)
DURATION_FRACTION = accepted("result", run(durationMs=12.5), run(durationMs=12.5))
# Reads badly (reported): the int/float union branches leak into the path, one line each.
DURATION_BOOLEAN = rejected(
    "result",
    run(durationMs=True),
    "durationMs: must be a number (got boolean)",
)
RESULT_MISSING_ALL = rejected(
    "result",
    {},
    "id: is required\nsyncName: is required\nstatus: is required\nstartedAt: is required",
)


def test_empty_stats_get_all_eight_counters() -> None:
    check(STATS_EMPTY)


def test_partial_stats_get_the_missing_counters() -> None:
    check(STATS_PARTIAL)


def test_unknown_keys_in_result_stats_and_error_items_are_dropped() -> None:
    check(RESULT_UNKNOWN_KEYS)


def test_an_error_item_needs_a_message() -> None:
    check(ERROR_WITHOUT_MESSAGE)


def test_duration_may_be_fractional() -> None:
    check(DURATION_FRACTION)


def test_duration_must_be_a_number() -> None:
    check(DURATION_BOOLEAN)


def test_a_result_names_every_missing_required_key() -> None:
    check(RESULT_MISSING_ALL)


# --- Every expectation above is the official parser's ---------------------------------------


def test_every_expectation_matches_the_official_parser() -> None:
    official = get_oracle().parse_many([(c.kind, c.data) for c in CASES])
    wrong = []
    for case, verdict in zip(CASES, official, strict=True):
        if verdict.ok != (case.error is None) or (
            verdict.ok and not same_json(verdict.data, case.output)
        ):
            wrong.append(
                f"{json.dumps(case.data)}\n  expected: {case.error or json.dumps(case.output)}"
                f"\n  official: {verdict.short()}"
            )
    assert len(CASES) >= 60
    assert not wrong, "hard-coded expectations the official parser disagrees with:\n" + "\n".join(
        wrong
    )
