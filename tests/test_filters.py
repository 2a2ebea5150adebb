"""ObjectQL filters: parsing both syntaxes, SQL on a real SQLite table, Python evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg2

from sync_assets.filters import (
    CANONICAL_OPS,
    And,
    Condition,
    FieldRef,
    FilterError,
    FilterNode,
    Not,
    Or,
    compile_filter,
    evaluate_filter,
    filter_fields,
    parse_filter,
)

# --------------------------------------------------------------------------- fixture data

METADATA = sa.MetaData()
RECORDS = sa.Table(
    "records",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=True),
    sa.Column("status", sa.String, nullable=True),
    sa.Column("amount", sa.Integer, nullable=True),
    # "limit" is a reserved word: the compiler must never interpolate names.
    sa.Column("limit", sa.Integer, nullable=True),
)

ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "Alpha", "status": "active", "amount": 10, "limit": 20},
    {"id": 2, "name": "alpha", "status": "active", "amount": 30, "limit": 20},
    {"id": 3, "name": "Beta", "status": "inactive", "amount": 20, "limit": 20},
    {"id": 4, "name": "100%", "status": "active", "amount": None, "limit": 50},
    {"id": 5, "name": "100 percent", "status": None, "amount": None, "limit": None},
    {"id": 6, "name": "a_b", "status": "archived", "amount": 5, "limit": 5},
    {"id": 7, "name": "axb", "status": "", "amount": 0, "limit": 10},
    {"id": 8, "name": "", "status": "inactive", "amount": -5, "limit": None},
    {"id": 9, "name": None, "status": "active", "amount": 100, "limit": 100},
    {"id": 10, "name": "x' OR 1=1 --", "status": "active", "amount": 15, "limit": 10},
]
ALL_IDS = [row["id"] for row in ROWS]
POSTGRESQL: sa.Dialect = psycopg2.dialect()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def engine() -> Iterator[sa.Engine]:
    eng = sa.create_engine("sqlite://")
    METADATA.create_all(eng)
    with eng.begin() as conn:
        conn.execute(RECORDS.insert(), ROWS)
    yield eng
    eng.dispose()


def sql_ids(engine: sa.Engine, node: FilterNode | None) -> list[int]:
    query = sa.select(RECORDS.c.id).where(compile_filter(node, RECORDS.c)).order_by(RECORDS.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def python_ids(node: FilterNode | None) -> list[int]:
    return [row["id"] for row in ROWS if evaluate_filter(node, row)]


def matching_ids(engine: sa.Engine, raw: object) -> list[int]:
    """Ids the filter selects in SQLite, after checking that Python selects the same."""
    node = parse_filter(raw)
    found = sql_ids(engine, node)
    assert python_ids(node) == found
    return found


def C(field: str, op: str, value: Any = None) -> Condition:
    return Condition(field, op, value)


# --------------------------------------------------------------------------- both forms


@pytest.mark.parametrize(
    ("forms", "expected"),
    [
        (
            [{"s": "x"}, {"s": {"$eq": "x"}}, ["s", "=", "x"], ["s", "==", "x"]],
            C("s", "eq", "x"),
        ),
        ([{"s": {"$ne": "x"}}, ["s", "!=", "x"], ["s", "<>", "x"]], C("s", "ne", "x")),
        ([{"n": {"$gt": 1}}, ["n", ">", 1]], C("n", "gt", 1)),
        ([{"n": {"$gte": 1.5}}, ["n", ">=", 1.5]], C("n", "gte", 1.5)),
        ([{"n": {"$lt": "b"}}, ["n", "<", "b"]], C("n", "lt", "b")),
        ([{"n": {"$lte": 0}}, ["n", "<=", 0]], C("n", "lte", 0)),
        ([{"s": {"$in": ["a", "b"]}}, ["s", "in", ["a", "b"]]], C("s", "in", ("a", "b"))),
        (
            [
                {"s": {"$nin": ["a"]}},
                ["s", "nin", ["a"]],
                ["s", "not_in", ["a"]],
                ["s", "not in", ["a"]],
            ],
            C("s", "nin", ("a",)),
        ),
        ([{"n": {"$between": [1, 9]}}, ["n", "between", [1, 9]]], C("n", "between", (1, 9))),
        ([{"s": {"$contains": "a"}}, ["s", "contains", "a"]], C("s", "contains", "a")),
        (
            [{"s": {"$notContains": "a"}}, ["s", "notcontains", "a"], ["s", "not_contains", "a"]],
            C("s", "not_contains", "a"),
        ),
        (
            [{"s": {"$startsWith": "a"}}, ["s", "startswith", "a"], ["s", "starts_with", "a"]],
            C("s", "starts_with", "a"),
        ),
        (
            [{"s": {"$endsWith": "a"}}, ["s", "endswith", "a"], ["s", "ends_with", "a"]],
            C("s", "ends_with", "a"),
        ),
        ([{"s": {"$like": "a%_"}}, ["s", "like", "a%_"]], C("s", "like", "a%_")),
        (
            [
                {"s": None},
                {"s": {"$eq": None}},
                {"s": {"$null": True}},
                {"s": {"$exists": False}},
                ["s", "=", None],
                ["s", "is_null"],
                ["s", "isnull"],
                ["s", "is_null", None],
            ],
            C("s", "is_null"),
        ),
        (
            [
                {"s": {"$ne": None}},
                {"s": {"$null": False}},
                {"s": {"$exists": True}},
                ["s", "!=", None],
                ["s", "is_not_null"],
                ["s", "isnotnull"],
            ],
            C("s", "is_not_null"),
        ),
        ([{"s": {"$empty": True}}, ["s", "is_empty"], ["s", "is_empty", ""]], C("s", "is_empty")),
        ([{"s": {"$empty": False}}, ["s", "is_not_empty"]], C("s", "is_not_empty")),
        (
            [{"a": {"$gt": {"$field": "b"}}}, ["a", ">", {"$field": "b"}]],
            C("a", "gt", FieldRef("b")),
        ),
        (
            [{"a": {"$field": "b"}}, {"a": {"$eq": {"$field": "b"}}}, ["a", "=", {"$field": "b"}]],
            C("a", "eq", FieldRef("b")),
        ),
    ],
)
def test_each_operator_gives_the_same_tree_in_both_forms(
    forms: list[object], expected: Condition
) -> None:
    assert [parse_filter(form) for form in forms] == [expected] * len(forms)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        (["s", "IN", ["a"]], C("s", "in", ("a",))),
        (["s", "Not_In", ["a"]], C("s", "nin", ("a",))),
        (["s", "NOT IN", ["a"]], C("s", "nin", ("a",))),
        (["s", "StartsWith", "a"], C("s", "starts_with", "a")),
        (["s", "ENDS_WITH", "a"], C("s", "ends_with", "a")),
        (["s", "NotContains", "a"], C("s", "not_contains", "a")),
        (["s", "LIKE", "a%"], C("s", "like", "a%")),
        (["n", "BETWEEN", [1, 2]], C("n", "between", (1, 2))),
        (["s", "IsNull"], C("s", "is_null")),
        (["s", "IS_NOT_EMPTY"], C("s", "is_not_empty")),
    ],
)
def test_array_operators_are_case_insensitive(spelling: list[object], expected: Condition) -> None:
    assert parse_filter(spelling) == expected


def test_several_keys_at_one_level_are_and() -> None:
    assert parse_filter({"a": 1, "b": 2}) == And((C("a", "eq", 1), C("b", "eq", 2)))


def test_several_operators_on_one_field_are_and() -> None:
    assert parse_filter({"n": {"$gte": 1, "$lt": 5}}) == And((C("n", "gte", 1), C("n", "lt", 5)))


def test_and_is_the_same_in_every_spelling() -> None:
    expected = And((C("a", "eq", 1), C("b", "eq", 2)))
    spellings: list[object] = [
        {"a": 1, "b": 2},
        {"$and": [{"a": 1}, {"b": 2}]},
        ["and", ["a", "=", 1], ["b", "=", 2]],
        ["AND", ["a", "=", 1], ["b", "=", 2]],
        [["a", "=", 1], ["b", "=", 2]],
        [["a", "=", 1], "and", ["b", "=", 2]],
    ]
    assert [parse_filter(s) for s in spellings] == [expected] * len(spellings)


def test_or_is_the_same_in_every_spelling() -> None:
    expected = Or((C("a", "eq", 1), C("b", "eq", 2)))
    spellings: list[object] = [
        {"$or": [{"a": 1}, {"b": 2}]},
        ["or", ["a", "=", 1], ["b", "=", 2]],
        [["a", "=", 1], "or", ["b", "=", 2]],
        [["a", "=", 1], "OR", ["b", "=", 2]],
    ]
    assert [parse_filter(s) for s in spellings] == [expected] * len(spellings)


def test_not_is_the_same_in_both_forms() -> None:
    expected = Not(And((C("a", "eq", 1), C("b", "eq", 2))))
    assert parse_filter({"$not": {"a": 1, "b": 2}}) == expected
    assert parse_filter(["not", [["a", "=", 1], ["b", "=", 2]]]) == expected


def test_nested_and_or_not_give_the_same_tree_in_both_forms() -> None:
    expected = And(
        (
            C("status", "eq", "active"),
            Or((C("amount", "gt", 10), Not(C("name", "starts_with", "x")))),
        )
    )
    objects = {
        "status": "active",
        "$or": [{"amount": {"$gt": 10}}, {"$not": {"name": {"$startsWith": "x"}}}],
    }
    arrays = [
        ["status", "=", "active"],
        ["or", ["amount", ">", 10], ["not", ["name", "startswith", "x"]]],
    ]
    assert parse_filter(objects) == expected
    assert parse_filter(arrays) == expected


def test_legacy_joiners_bind_and_tighter_than_or() -> None:
    raw = [["a", "=", 1], "or", ["b", "=", 2], "and", ["c", "=", 3]]
    assert parse_filter(raw) == Or((C("a", "eq", 1), And((C("b", "eq", 2), C("c", "eq", 3)))))


def test_object_and_array_forms_can_nest_inside_each_other() -> None:
    assert parse_filter({"$or": [["a", "=", 1], {"b": 2}]}) == Or(
        (C("a", "eq", 1), C("b", "eq", 2))
    )


def test_nested_ands_are_flattened() -> None:
    raw = {"$and": [{"a": 1}, {"$and": [{"b": 2}, {"c": 3}]}]}
    assert parse_filter(raw) == And((C("a", "eq", 1), C("b", "eq", 2), C("c", "eq", 3)))


def test_double_negation_cancels() -> None:
    assert parse_filter({"$not": {"$not": {"a": 1}}}) == C("a", "eq", 1)


@pytest.mark.parametrize("raw", [None, {}, [], {"$and": []}, ["and"], {"$or": [{}, {"a": 1}]}])
def test_an_empty_filter_matches_everything(raw: object) -> None:
    assert parse_filter(raw) is None


def test_an_empty_filter_inside_and_is_dropped() -> None:
    assert parse_filter({"$and": [{}, {"a": 1}]}) == C("a", "eq", 1)


def test_condition_paths_do_not_take_part_in_equality() -> None:
    assert Condition("a", "eq", 1, path="x") == Condition("a", "eq", 1, path="y")


def test_conditions_are_immutable_and_hashable() -> None:
    node = parse_filter({"s": {"$in": ["a", "b"]}})
    assert isinstance(node, Condition)
    with pytest.raises(AttributeError):
        node.op = "nin"  # type: ignore[misc]
    assert hash(node) == hash(C("s", "in", ("a", "b")))


def test_the_canonical_operator_set() -> None:
    assert sorted(CANONICAL_OPS) == sorted(
        [
            "eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "between",
            "contains", "not_contains", "starts_with", "ends_with", "like",
            "is_null", "is_not_null", "is_empty", "is_not_empty",
        ]
    )  # fmt: skip


# --------------------------------------------------------------------------- errors

OBJECT_OPS = (
    "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $between, $contains, $notContains, "
    "$startsWith, $endsWith, $like, $null, $exists, $empty"
)
ARRAY_OPS = (
    "=, ==, !=, <>, >, >=, <, <=, in, nin, not_in, not in, contains, notcontains, "
    "not_contains, startswith, starts_with, endswith, ends_with, like, between, is_null, "
    "isnull, is_not_null, isnotnull, is_empty, is_not_empty"
)


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        (
            {"$or": [{"a": 1}, {"amount": {"$gtt": 5}}]},
            "source.filters.$or[1].amount",
            f"unknown operator '$gtt'; allowed operators: {OBJECT_OPS}",
        ),
        (
            ["amount", "=>", 5],
            "source.filters",
            f"unknown operator '=>'; allowed operators (any case): {ARRAY_OPS}",
        ),
        (
            {"s": {"$in": "a"}},
            "source.filters.s.$in",
            "$in needs a list of values, got a string",
        ),
        (["s", "in", "a"], "source.filters", "'in' needs a list of values, got a string"),
        (
            {"n": {"$between": [1, 2, 3]}},
            "source.filters.n.$between",
            "$between needs a list of exactly two values [min, max], got a list of 3 values",
        ),
        (
            ["n", "between", 1],
            "source.filters",
            "'between' needs a list of exactly two values [min, max], got a number",
        ),
        (
            {"n": {"$between": [1, None]}},
            "source.filters.n.$between[1]",
            "$between bounds must be strings or numbers, got null",
        ),
        ({"$and": {"a": 1}}, "source.filters.$and", "$and needs a list of filters, got an object"),
        ({"$or": "a"}, "source.filters.$or", "$or needs a list of filters, got a string"),
        ({"$or": []}, "source.filters.$or", "$or needs at least one filter"),
        ({"$not": {}}, "source.filters.$not", "$not needs a non-empty filter"),
        (
            {"$not": "a"},
            "source.filters.$not",
            "$not needs a filter (an object or a list), got a string",
        ),
        (
            {"$nor": [{"a": 1}]},
            "source.filters.$nor",
            "'$nor' is not a logical operator; allowed at this level: $and, $or, $not "
            "(field names cannot start with '$')",
        ),
        ([5, "=", 1], "source.filters", "a field name must be a string, got a number"),
        ({"": 1}, "source.filters.", "a field name must not be empty"),
        (
            {"s": {"$eq": {"a": 1}}},
            "source.filters.s.$eq",
            "value must be a string, number, boolean or null, got an object",
        ),
        (
            {"s": {"$in": ["a", ["b"]]}},
            "source.filters.s.$in[1]",
            "value must be a string, number, boolean or null, got a list",
        ),
        (
            {"s": {"$in": [{"$field": "t"}]}},
            "source.filters.s.$in[0]",
            "value must be a string, number, boolean or null, got an object",
        ),
        (
            {"s": ["a", "b"]},
            "source.filters.s",
            "an equality needs a single value, got a list; use $in for a list of values",
        ),
        (
            ["s", "=", ["a"]],
            "source.filters",
            "'=' needs a single value, got a list; use 'in' for a list of values",
        ),
        (
            {"n": {"$gt": None}},
            "source.filters.n.$gt",
            "$gt cannot compare with null; use $null to test for null",
        ),
        (
            ["n", ">", None],
            "source.filters",
            "'>' cannot compare with null; use 'is_null' to test for null",
        ),
        (
            {"n": {"$lt": True}},
            "source.filters.n.$lt",
            "$lt needs a string or a number, got a boolean",
        ),
        (
            {"s": {"$contains": 5}},
            "source.filters.s.$contains",
            "$contains needs a string, got a number",
        ),
        (
            {"s": {"$like": "50\\"}},
            "source.filters.s.$like",
            "$like pattern ends with a lone backslash; "
            "write two backslashes to match a literal backslash",
        ),
        (
            {"s": {"$null": "yes"}},
            "source.filters.s.$null",
            "$null needs true or false, got a string",
        ),
        (
            {"s": {"$exists": 1}},
            "source.filters.s.$exists",
            "$exists needs true or false, got a number",
        ),
        (
            {"s": {}},
            "source.filters.s",
            'an operator object needs at least one operator, e.g. {"$eq": value}',
        ),
        (
            {"owner": {"name": "x"}},
            "source.filters.owner",
            "'name' is not an operator (operators start with '$'); "
            "filters on related objects are not supported",
        ),
        (
            {"a": {"$field": "b", "$gt": 1}},
            "source.filters.a",
            'a field reference is {"$field": "column"}; got extra keys: $gt',
        ),
        (
            {"a": {"$gt": {"$field": ""}}},
            "source.filters.a.$gt",
            "$field needs a column name (a non-empty string), got a string",
        ),
        (
            {"n": {"$eq": float("nan")}},
            "source.filters.n.$eq",
            "value must be a finite number, got nan",
        ),
        (
            "status = 'active'",
            "source.filters",
            "a filter must be an object or a list, got a string",
        ),
        (
            ["s", "=", "a", "b"],
            "source.filters",
            "a condition is [field, operator] or [field, operator, value], "
            "got a list of 4 elements",
        ),
        (
            ["s"],
            "source.filters",
            "a condition is [field, operator] or [field, operator, value], got a list of 1 element",
        ),
        (["s", "="], "source.filters", "'=' needs a value: [field, '=', value]"),
        (["s", 5, 1], "source.filters", "an operator must be a string, got a number"),
        (
            ["s", "is_null", False],
            "source.filters",
            "'is_null' takes no value, got false; use 'is_not_null'",
        ),
        (
            ["not", ["a", "=", 1], ["b", "=", 2]],
            "source.filters",
            "'not' takes exactly one filter, got 2",
        ),
        (["or"], "source.filters", "'or' needs at least one filter"),
        (
            [["a", "=", 1], "xor", ["b", "=", 2]],
            "source.filters[1]",
            "expected 'and' or 'or' between filters, got 'xor'",
        ),
        ([["a", "=", 1], "or"], "source.filters[1]", "'or' must stand between two filters"),
        (
            [["a", "=", 1], ["b", "in", 2]],
            "source.filters[1]",
            "'in' needs a list of values, got a number",
        ),
        (
            [1, 2],
            "source.filters",
            "a filter list is [field, operator, value], ['and' | 'or' | 'not', filter, ...] "
            "or a list of filters; it starts with a number",
        ),
    ],
)
def test_errors_name_the_place_and_the_problem(raw: object, path: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(raw)
    assert (caught.value.path, caught.value.message) == (path, message)
    assert str(caught.value) == f"{path}: {message}"


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


def test_the_path_prefix_can_be_chosen() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter({"a": {"$in": 1}}, path="syncs[0].source.filters")
    assert caught.value.path == "syncs[0].source.filters.a.$in"


# --------------------------------------------------------------------------- fields


def test_filter_fields_lists_every_column_read_including_field_references() -> None:
    node = parse_filter(
        {
            "status": "active",
            "$or": [{"amount": {"$gt": {"$field": "limit"}}}, {"$not": {"name": None}}],
        }
    )
    assert filter_fields(node) == {"status", "amount", "limit", "name"}


def test_filter_fields_of_no_filter_is_empty() -> None:
    assert filter_fields(None) == set()


# --------------------------------------------------------------------------- SQL and Python


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": "active"}, [1, 2, 4, 9, 10]),
        # Not equal keeps the rows with no status, as upstream ObjectQL does.
        ({"status": {"$ne": "active"}}, [3, 5, 6, 7, 8]),
        ({"amount": {"$gt": 15}}, [2, 3, 9]),
        ({"amount": {"$gte": 15}}, [2, 3, 9, 10]),
        ({"amount": {"$lt": 10}}, [6, 7, 8]),
        ({"amount": {"$lte": 10}}, [1, 6, 7, 8]),
        ({"status": {"$in": ["inactive", "archived"]}}, [3, 6, 8]),
        ({"status": {"$in": ["archived", None]}}, [5, 6]),
        ({"status": {"$in": []}}, []),
        ({"status": {"$nin": ["active", "inactive"]}}, [5, 6, 7]),
        ({"status": {"$nin": ["active", None]}}, [3, 6, 7, 8]),
        ({"status": {"$nin": []}}, ALL_IDS),
        ({"amount": {"$between": [10, 30]}}, [1, 2, 3, 10]),
        ({"amount": {"$between": [30, 10]}}, []),
        ({"name": {"$contains": "lpha"}}, [1, 2]),
        ({"name": {"$notContains": "a"}}, [4, 5, 8, 9, 10]),
        ({"name": {"$startsWith": "a"}}, [2, 6, 7]),
        ({"name": {"$endsWith": "a"}}, [1, 2, 3]),
        ({"name": {"$contains": ""}}, [1, 2, 3, 4, 5, 6, 7, 8, 10]),
        ({"name": {"$like": "a_b"}}, [6, 7]),
        ({"name": {"$like": "100%"}}, [4, 5]),
        ({"name": {"$like": "%\\%"}}, [4]),
        ({"name": {"$like": "a\\_b"}}, [6]),
        ({"name": None}, [9]),
        ({"name": {"$null": False}}, [1, 2, 3, 4, 5, 6, 7, 8, 10]),
        ({"name": {"$exists": True}}, [1, 2, 3, 4, 5, 6, 7, 8, 10]),
        ({"status": {"$empty": True}}, [5, 7]),
        ({"status": {"$empty": False}}, [1, 2, 3, 4, 6, 8, 9, 10]),
        # An integer column cannot hold '', so empty means NULL there.
        (["amount", "is_empty"], [4, 5]),
        (["amount", "is_not_empty"], [1, 2, 3, 6, 7, 8, 9, 10]),
    ],
)
def test_each_operator_selects_exactly_these_rows(
    engine: sa.Engine, raw: object, expected: list[int]
) -> None:
    assert matching_ids(engine, raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"amount": {"$gt": {"$field": "limit"}}}, [2, 10]),
        ({"amount": {"$lte": {"$field": "limit"}}}, [1, 3, 6, 7, 9]),
        # Two empty columns count as equal (row 5); one empty side is unequal (rows 4, 8).
        ({"amount": {"$field": "limit"}}, [3, 5, 6, 9]),
        ({"amount": {"$ne": {"$field": "limit"}}}, [1, 2, 4, 7, 8, 10]),
        ({"$not": {"amount": {"$gt": {"$field": "limit"}}}}, [1, 3, 4, 5, 6, 7, 8, 9]),
    ],
)
def test_field_references_compare_two_columns(
    engine: sa.Engine, raw: object, expected: list[int]
) -> None:
    assert matching_ids(engine, raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Negation is two-valued: NOT of a positive test returns the NULL rows ...
        ({"$not": {"status": "active"}}, [3, 5, 6, 7, 8]),
        ({"$not": {"amount": {"$gt": 15}}}, [1, 4, 5, 6, 7, 8, 10]),
        ({"$not": {"amount": {"$between": [10, 30]}}}, [4, 5, 6, 7, 8, 9]),
        ({"$not": {"name": {"$contains": "a"}}}, [4, 5, 8, 9, 10]),
        ({"$not": {"name": {"$like": "a%"}}}, [1, 3, 4, 5, 8, 9, 10]),
        ({"$not": {"status": {"$in": ["active"]}}}, [3, 5, 6, 7, 8]),
        ({"$not": {"status": {"$in": []}}}, ALL_IDS),
        ({"$not": {"status": {"$empty": True}}}, [1, 2, 3, 4, 6, 8, 9, 10]),
        # ... and NOT of a negative test returns only the rows that have the value.
        ({"$not": {"status": {"$ne": "active"}}}, [1, 2, 4, 9, 10]),
        ({"$not": {"status": {"$nin": ["active"]}}}, [1, 2, 4, 9, 10]),
        ({"$not": {"name": {"$notContains": "a"}}}, [1, 2, 3, 6, 7]),
        ({"$not": {"status": {"$nin": []}}}, []),
        ({"$not": {"$or": [{"status": "active"}, {"amount": {"$lt": 10}}]}}, [3, 5]),
        (
            {"$not": {"$and": [{"status": "active"}, {"amount": {"$lt": 20}}]}},
            [2, 3, 4, 5, 6, 7, 8, 9],
        ),
    ],
)
def test_not_is_plain_negation(engine: sa.Engine, raw: object, expected: list[int]) -> None:
    assert matching_ids(engine, raw) == expected


def test_nested_and_or_not_select_exactly_these_rows(engine: sa.Engine) -> None:
    raw = {
        "$or": [
            {"status": "inactive"},
            {"$and": [{"amount": {"$gte": 30}}, {"$not": {"name": None}}]},
        ]
    }
    assert matching_ids(engine, raw) == [2, 3, 8]


def test_legacy_array_filters_select_the_same_rows_as_objects(engine: sa.Engine) -> None:
    legacy = [["status", "=", "active"], ["amount", ">=", 15]]
    assert (
        matching_ids(engine, legacy)
        == matching_ids(engine, {"status": "active", "amount": {"$gte": 15}})
        == [2, 9, 10]
    )


def test_legacy_or_joiner_selects_either_side(engine: sa.Engine) -> None:
    raw = [["status", "=", "archived"], "or", ["amount", "<", 0]]
    assert matching_ids(engine, raw) == [6, 8]


def test_no_filter_selects_every_row(engine: sa.Engine) -> None:
    assert matching_ids(engine, None) == ALL_IDS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"name": {"$contains": "alpha"}}, [2]),
        ({"name": {"$startsWith": "A"}}, [1]),
        ({"name": {"$endsWith": "HA"}}, []),
        ({"name": {"$like": "alpha"}}, [2]),
        ({"name": {"$like": "A%"}}, [1]),
        ({"name": "alpha"}, [2]),
    ],
)
def test_text_matching_is_case_sensitive_on_sqlite(
    engine: sa.Engine, raw: object, expected: list[int]
) -> None:
    assert matching_ids(engine, raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"name": {"$contains": "%"}}, [4]),
        ({"name": {"$contains": "_"}}, [6]),
        ({"name": {"$startsWith": "100%"}}, [4]),
        ({"name": {"$endsWith": "_b"}}, [6]),
        ({"name": {"$contains": "*"}}, []),
        ({"name": {"$contains": "["}}, []),
        ({"name": {"$contains": "?"}}, []),
    ],
)
def test_wildcards_in_contains_are_literal(
    engine: sa.Engine, raw: object, expected: list[int]
) -> None:
    assert matching_ids(engine, raw) == expected


def test_a_quote_in_a_value_is_data_not_sql(engine: sa.Engine) -> None:
    injection = "x' OR 1=1 --"
    assert matching_ids(engine, {"name": injection}) == [10]
    assert matching_ids(engine, {"status": injection}) == []
    assert matching_ids(engine, {"name": {"$contains": "' OR 1=1"}}) == [10]
    assert matching_ids(engine, ["status", "in", [injection]]) == []


@pytest.mark.parametrize("dialect", [sqlite.dialect(), POSTGRESQL])
def test_values_are_bound_parameters_never_sql_text(dialect: sa.Dialect) -> None:
    node = parse_filter(
        {
            "name": {"$contains": "x' OR 1=1 --"},
            "status": {"$in": ["x' OR 1=1 --"]},
            "amount": {"$gt": 123456},
        }
    )
    compiled = (
        sa.select(RECORDS.c.id).where(compile_filter(node, RECORDS.c)).compile(dialect=dialect)
    )
    sql = str(compiled)
    assert "1=1" not in sql
    assert "123456" not in sql
    assert 123456 in compiled.params.values()


def test_postgresql_gets_like_with_an_escape_and_sqlite_gets_glob() -> None:
    node = parse_filter({"name": {"$contains": "50%_off/"}})
    where = compile_filter(node, RECORDS.c)
    pg = where.compile(dialect=POSTGRESQL)
    lite = where.compile(dialect=sqlite.dialect())
    assert "LIKE" in str(pg) and "ESCAPE '/'" in str(pg)
    assert "%50/%/_off//%" in pg.params.values()
    assert "GLOB" in str(lite)
    assert "*50%_off/*" in lite.params.values()


def test_a_reused_statement_shape_does_not_reuse_the_old_pattern(engine: sa.Engine) -> None:
    # Same filter shape, different values: the statement cache must not serve the first
    # pattern for the second query.
    with engine.connect() as conn:
        for text, expected in [("lpha", [1, 2]), ("eta", [3]), ("lpha", [1, 2])]:
            where = compile_filter(parse_filter({"name": {"$contains": text}}), RECORDS.c)
            query = sa.select(RECORDS.c.id).where(where).order_by(RECORDS.c.id)
            assert list(conn.execute(query).scalars()) == expected


def test_compile_refuses_an_unknown_field() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(parse_filter({"$or": [{"a": 1}, {"colour": "red"}]}), {"a": RECORDS.c.id})
    assert (
        str(caught.value) == "source.filters.$or[1].colour: unknown field 'colour'; known fields: a"
    )


def test_compile_refuses_an_unknown_field_reference() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(parse_filter({"amount": {"$gt": {"$field": "cap"}}}), RECORDS.c)
    assert caught.value.path == "source.filters.amount.$gt"
    assert caught.value.message == (
        "unknown field 'cap'; known fields: amount, id, limit, name, status"
    )


def test_compile_refuses_text_matching_on_a_number_column() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(parse_filter({"amount": {"$startsWith": "1"}}), RECORDS.c)
    assert str(caught.value) == (
        "source.filters.amount.$startsWith: starts_with needs a text column; 'amount' is INTEGER"
    )


def test_compile_of_a_match_nothing_tree_selects_nothing(engine: sa.Engine) -> None:
    assert sql_ids(engine, Or(())) == []
    assert sql_ids(engine, Not(And(()))) == []


# --------------------------------------------------------------------------- dates

EVENTS_METADATA = sa.MetaData()
EVENTS = sa.Table(
    "events",
    EVENTS_METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime, nullable=True),
    sa.Column("on", sa.Date, nullable=True),
)
EVENT_ROWS: list[dict[str, Any]] = [
    {"id": 1, "at": datetime(2024, 1, 1, 12, 0), "on": datetime(2024, 1, 1).date()},
    {"id": 2, "at": datetime(2024, 1, 2, 0, 0), "on": datetime(2024, 1, 2).date()},
    {"id": 3, "at": datetime(2024, 1, 3, 8, 30), "on": datetime(2024, 1, 3).date()},
    {"id": 4, "at": None, "on": None},
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"at": {"$gte": "2024-01-02T00:00:00Z"}}, [2, 3]),
        ({"at": {"$gte": "2024-01-02T01:00:00+01:00"}}, [2, 3]),
        ({"at": {"$lt": "2024-01-02"}}, [1]),
        ({"at": "2024-01-02T00:00:00"}, [2]),
        ({"on": {"$between": ["2024-01-02", "2024-01-03"]}}, [2, 3]),
        ({"on": {"$in": ["2024-01-01", "2024-01-03"]}}, [1, 3]),
    ],
)
def test_iso_strings_compare_with_date_columns(raw: object, expected: list[int]) -> None:
    eng = sa.create_engine("sqlite://")
    EVENTS_METADATA.create_all(eng)
    with eng.begin() as conn:
        conn.execute(EVENTS.insert(), EVENT_ROWS)
        node = parse_filter(raw)
        query = sa.select(EVENTS.c.id).where(compile_filter(node, EVENTS.c)).order_by(EVENTS.c.id)
        assert list(conn.execute(query).scalars()) == expected
    assert [row["id"] for row in EVENT_ROWS if evaluate_filter(node, row)] == expected
    eng.dispose()


def test_a_string_that_is_not_a_date_is_refused_for_a_date_column() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(parse_filter({"on": {"$gt": "soon"}}), EVENTS.c)
    assert caught.value.message == "'soon' is not an ISO 8601 date (column 'on')"


# --------------------------------------------------------------------------- Python only


def test_a_missing_key_is_null() -> None:
    assert evaluate_filter(parse_filter({"name": None}), {}) is True
    assert evaluate_filter(parse_filter({"name": {"$ne": "x"}}), {}) is True
    assert evaluate_filter(parse_filter({"name": {"$gt": "a"}}), {}) is False


def test_values_of_different_types_do_not_match() -> None:
    assert evaluate_filter(parse_filter({"n": {"$gt": "5"}}), {"n": 7}) is False
    assert evaluate_filter(parse_filter({"n": "7"}), {"n": 7}) is False
    assert evaluate_filter(parse_filter({"n": {"$ne": "7"}}), {"n": 7}) is True


def test_numbers_of_different_kinds_compare_by_value() -> None:
    assert evaluate_filter(parse_filter({"n": 1}), {"n": 1.0}) is True
    assert evaluate_filter(parse_filter({"n": {"$lt": 2}}), {"n": 1.5}) is True


def test_an_empty_list_in_a_record_is_empty() -> None:
    assert evaluate_filter(parse_filter({"tags": {"$empty": True}}), {"tags": []}) is True


def test_aware_and_naive_datetimes_compare_as_utc() -> None:
    node = parse_filter({"at": {"$gt": "2024-01-01T10:00:00Z"}})
    assert evaluate_filter(node, {"at": datetime(2024, 1, 1, 11, 0)}) is True
    assert evaluate_filter(node, {"at": datetime(2024, 1, 1, 9, 0, tzinfo=UTC)}) is False


def test_no_filter_matches_any_record() -> None:
    assert evaluate_filter(None, {}) is True


# --------------------------------------------------------------------------- properties

PROPERTY_METADATA = sa.MetaData()
SAMPLE = sa.Table(
    "sample",
    PROPERTY_METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("s", sa.String, nullable=True),
    sa.Column("t", sa.String, nullable=True),
    sa.Column("n", sa.Integer, nullable=True),
    sa.Column("m", sa.Integer, nullable=True),
)
TEXT_COLUMNS = ("s", "t")
NUMBER_COLUMNS = ("n", "m")
# Every character that means something to LIKE, GLOB or a regex, plus a case pair. Half
# of the strings use the case pair alone, so that case-folding bugs show up often.
ALPHABET = "aA%_*?[]^\\/é"

texts = st.one_of(st.text(alphabet="aA", max_size=3), st.text(alphabet=ALPHABET, max_size=3))
numbers = st.integers(min_value=-3, max_value=3)


def _like_patterns() -> st.SearchStrategy[str]:
    token = st.one_of(
        st.sampled_from(["%", "_"]),
        st.sampled_from(ALPHABET).map(lambda ch: "\\" + ch if ch in "%_\\" else ch),
        st.sampled_from(ALPHABET).map(lambda ch: "\\" + ch),
    )
    return st.lists(token, max_size=4).map("".join)


def _conditions(
    columns: tuple[str, ...], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[Condition]:
    column = st.sampled_from(columns)
    comparand = st.one_of(values, st.sampled_from(columns).map(FieldRef))
    members = st.lists(st.one_of(st.none(), values), max_size=3).map(tuple)
    choices = [
        st.builds(
            Condition, column, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), comparand
        ),
        st.builds(Condition, column, st.sampled_from(["in", "nin"]), members),
        st.builds(Condition, column, st.just("between"), st.tuples(values, values)),
        st.builds(
            Condition,
            column,
            st.sampled_from(["is_null", "is_not_null", "is_empty", "is_not_empty"]),
        ),
    ]
    if columns == TEXT_COLUMNS:
        choices += [
            st.builds(
                Condition,
                column,
                st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]),
                texts,
            ),
            st.builds(Condition, column, st.just("like"), _like_patterns()),
        ]
    return st.one_of(choices)


text_leaves = _conditions(TEXT_COLUMNS, texts)
leaves = st.one_of(text_leaves, text_leaves, _conditions(NUMBER_COLUMNS, numbers))
trees: st.SearchStrategy[FilterNode] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(children, max_size=3).map(lambda items: Or(tuple(items))),
        children.map(Not),
    ),
    max_leaves=6,
)
records = st.lists(
    st.fixed_dictionaries(
        {
            "s": st.one_of(st.none(), texts),
            "t": st.one_of(st.none(), texts),
            "n": st.one_of(st.none(), numbers),
            "m": st.one_of(st.none(), numbers),
        }
    ),
    max_size=10,
)

_property_engine: sa.Engine | None = None


def _sample_engine() -> sa.Engine:
    global _property_engine
    if _property_engine is None:
        _property_engine = sa.create_engine("sqlite://")
        PROPERTY_METADATA.create_all(_property_engine)
    return _property_engine


def assert_python_agrees_with_sqlite(node: FilterNode, rows: list[dict[str, Any]]) -> None:
    numbered = [{"id": i, **row} for i, row in enumerate(rows, start=1)]
    with _sample_engine().begin() as conn:
        conn.execute(SAMPLE.delete())
        if numbered:
            conn.execute(SAMPLE.insert(), numbered)
        query = sa.select(SAMPLE.c.id).where(compile_filter(node, SAMPLE.c)).order_by(SAMPLE.c.id)
        in_sql = list(conn.execute(query).scalars())
    in_python = [row["id"] for row in numbered if evaluate_filter(node, row)]
    assert in_python == in_sql


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=trees, rows=records)
def test_python_evaluation_agrees_with_sqlite(node: FilterNode, rows: list[dict[str, Any]]) -> None:
    assert_python_agrees_with_sqlite(node, rows)


text_matches = st.builds(
    Condition,
    st.sampled_from(TEXT_COLUMNS),
    st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]),
    texts,
) | st.builds(Condition, st.sampled_from(TEXT_COLUMNS), st.just("like"), _like_patterns())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=text_matches, negate=st.booleans(), rows=records)
def test_text_matching_in_python_agrees_with_sqlite(
    node: Condition, negate: bool, rows: list[dict[str, Any]]
) -> None:
    assert_python_agrees_with_sqlite(Not(node) if negate else node, rows)


_OBJECT_SPELLING = {
    "eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte",
    "in": "$in", "nin": "$nin", "between": "$between", "contains": "$contains",
    "not_contains": "$notContains", "starts_with": "$startsWith", "ends_with": "$endsWith",
    "like": "$like",
}  # fmt: skip
_OBJECT_FLAGS = {
    "is_null": {"$null": True},
    "is_not_null": {"$exists": True},
    "is_empty": {"$empty": True},
    "is_not_empty": {"$empty": False},
}
_ARRAY_SPELLINGS = {
    "eq": ["=", "=="], "ne": ["!=", "<>"], "gt": [">"], "gte": [">="], "lt": ["<"],
    "lte": ["<="], "in": ["in"], "nin": ["nin", "not_in"], "between": ["between"],
    "contains": ["contains"], "not_contains": ["notcontains", "not_contains"],
    "starts_with": ["startswith", "starts_with"], "ends_with": ["endswith", "ends_with"],
    "like": ["like"], "is_null": ["is_null", "isnull"], "is_not_null": ["is_not_null", "isnotnull"],
    "is_empty": ["is_empty"], "is_not_empty": ["is_not_empty"],
}  # fmt: skip


def _raw_value(value: Any) -> Any:
    if isinstance(value, FieldRef):
        return {"$field": value.name}
    if isinstance(value, tuple):
        return list(value)
    return value


def _object_form(node: FilterNode) -> object:
    if isinstance(node, Condition):
        if node.op in _OBJECT_FLAGS:
            return {node.field: _OBJECT_FLAGS[node.op]}
        return {node.field: {_OBJECT_SPELLING[node.op]: _raw_value(node.value)}}
    if isinstance(node, Not):
        return {"$not": _object_form(node.item)}
    key = "$and" if isinstance(node, And) else "$or"
    return {key: [_object_form(item) for item in node.items]}


def _array_form(node: FilterNode, data: st.DataObject) -> object:
    if isinstance(node, Condition):
        spelling = data.draw(st.sampled_from(_ARRAY_SPELLINGS[node.op]))
        spelling = data.draw(st.sampled_from([spelling, spelling.upper(), spelling.title()]))
        if node.op in _OBJECT_FLAGS:
            return [node.field, spelling]
        return [node.field, spelling, _raw_value(node.value)]
    if isinstance(node, Not):
        return ["not", _array_form(node.item, data)]
    word = "and" if isinstance(node, And) else "or"
    return [word, *(_array_form(item, data) for item in node.items)]


nonempty_trees: st.SearchStrategy[FilterNode] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(children, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
        children.filter(lambda c: not isinstance(c, Not)).map(Not),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(node=nonempty_trees, data=st.data())
def test_both_forms_of_a_random_filter_parse_to_the_same_tree(
    node: FilterNode, data: st.DataObject
) -> None:
    from_objects = parse_filter(_object_form(node))
    from_arrays = parse_filter(_array_form(node, data))
    assert from_objects == from_arrays
    assert filter_fields(from_objects) == filter_fields(node)
