"""CEL expressions (sync_assets.engine.cel): compile checks, evaluation, JS-named extensions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from sync_assets.engine.cel import (
    CelProgram,
    EvaluationError,
    ExpressionError,
    compile_expression,
)

UTC = dt.UTC
RECORD = {"first_name": "Ada", "last_name": "Lovelace", "email": None, "age": 36}


def run(source: str, **variables: object) -> object:
    return compile_expression(source).evaluate(variables)


# --------------------------------------------------------------------------- the spec example


def test_spec_example_to_upper_case() -> None:
    assert run("value.toUpperCase()", value="ada") == "ADA"


def test_chained_trim_then_to_lower_case() -> None:
    assert run("value.trim().toLowerCase()", value="  MiXeD Case \t") == "mixed case"


def test_concatenate_record_fields() -> None:
    source = 'record.first_name + " " + record.last_name'
    assert run(source, record=RECORD) == "Ada Lovelace"


def test_fields_bound_by_name() -> None:
    assert run('first_name + "!"', first_name="Ada") == "Ada!"


# --------------------------------------------------------------------------- standard CEL


def test_int_multiplication() -> None:
    result = run("value * 2", value=21)
    assert result == 42
    assert type(result) is int


def test_double_division() -> None:
    result = run("value / 2.0", value=5.0)
    assert result == 2.5
    assert type(result) is float


def test_int_division_truncates_toward_zero() -> None:
    assert run("value / 2", value=-7) == -3


def test_ternary() -> None:
    assert run('value > 10 ? "big" : "small"', value=11) == "big"
    assert run('value > 10 ? "big" : "small"', value=10) == "small"


def test_has_present_field() -> None:
    assert run("has(record.email)", record=RECORD) is True


def test_has_missing_field() -> None:
    assert run("has(record.phone)", record=RECORD) is False


def test_size_counts_code_points() -> None:
    assert run("size(value)", value="héllo") == 5


def test_in_list() -> None:
    assert run('value in ["a", "b"]', value="b") is True
    assert run('value in ["a", "b"]', value="c") is False


def test_comparison_with_null_is_false_not_an_error() -> None:
    assert run("value == null", value=1) is False
    assert run('value != null ? value : "none"', value="q") == "q"
    assert run('value != null ? value : "none"', value=None) == "none"


def test_numbers_compare_across_int_and_double() -> None:
    assert run("1 == 1.0") is True
    assert run("10 < value", value=10.5) is True


def test_comprehension_with_outer_variable() -> None:
    assert run("value.map(x, x * factor)", value=[1, 2], factor=3) == [3, 6]


def test_string_of_bool_is_lowercase() -> None:
    assert run("string(value)", value=True) == "true"


def test_int_of_string() -> None:
    assert run("int(value)", value="42") == 42


def test_short_circuit_skips_null_receiver() -> None:
    assert run('value != null && value.toUpperCase() == "X"', value=None) is False


# --------------------------------------------------------------------------- conversions in/out


def test_decimal_becomes_double() -> None:
    result = run("value * 2.0", value=Decimal("1.25"))
    assert result == 2.5
    assert type(result) is float


def test_decimal_times_int_literal_is_a_type_error() -> None:
    with pytest.raises(EvaluationError, match=r"^no such overload: double \* int"):
        run("value * 2", value=Decimal("1.25"))


def test_date_becomes_timestamp_at_midnight_utc() -> None:
    assert run("value", value=dt.date(2024, 3, 1)) == dt.datetime(2024, 3, 1, tzinfo=UTC)


def test_date_supports_timestamp_functions() -> None:
    assert run("value.getFullYear()", value=dt.date(2024, 3, 1)) == 2024


def test_date_compares_with_timestamp_literal() -> None:
    source = 'value > timestamp("2024-01-01T00:00:00Z")'
    assert run(source, value=dt.date(2024, 3, 1)) is True


def test_naive_datetime_is_utc() -> None:
    naive = dt.datetime(2024, 3, 1, 12, 30, 15)
    assert run("value", value=naive) == dt.datetime(2024, 3, 1, 12, 30, 15, tzinfo=UTC)


def test_timestamp_minus_duration() -> None:
    source = 'value - duration("1h")'
    assert run(source, value=dt.datetime(2024, 1, 1)) == dt.datetime(2023, 12, 31, 23, tzinfo=UTC)


def test_nested_containers_round_trip() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": b"raw"}}
    assert run("value", value=value) == value


def test_result_types_are_plain_python() -> None:
    result = run('{"n": 1, "s": "x", "ok": true}')
    assert result == {"n": 1, "s": "x", "ok": True}
    assert [type(v) for v in result.values()] == [int, str, bool]


def test_unsupported_input_type() -> None:
    with pytest.raises(EvaluationError, match=r"^variable 'value': values of type object"):
        run("value", value=object())


def test_int_outside_int64() -> None:
    with pytest.raises(EvaluationError, match=r"does not fit in a CEL int \(64-bit\)"):
        run("value", value=2**70)


# --------------------------------------------------------------------------- JS-named extensions


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("value.toUpperCase()", "straße", "STRASSE"),
        ("value.toLowerCase()", "ÀBC", "àbc"),
        ("value.trim()", "\n  a b \t", "a b"),
        ('value.startsWith("ba")', "banana", True),
        ('value.endsWith("na")', "banana", True),
        ('value.endsWith("x")', "banana", False),
        ('value.includes("nan")', "banana", True),
        ('value.includes("xyz")', "banana", False),
        ("value.includes(2)", [1, 2], True),
        ('value.replace("a", "o")', "banana", "bonono"),
        ('value.split(",")', "a,b,,c", ["a", "b", "", "c"]),
        ('value.split("")', "abc", ["a", "b", "c"]),
        ("value.substring(1)", "hello", "ello"),
        ("value.substring(1, 3)", "hello", "el"),
        ("value.substring(3, 1)", "hello", "el"),
        ("value.substring(-5, 99)", "hello", "hello"),
        ('value.padStart(5, "0")', "42", "00042"),
        ('value.padStart(7, "ab")', "42", "ababa42"),
        ("value.padStart(4)", "42", "  42"),
        ('value.padStart(1, "0")', "42", "42"),
        ('value.padEnd(5, ".")', "42", "42..."),
        ("value.lowerAscii()", "ÀBC", "Àbc"),
        ("value.upperAscii()", "àbc", "àBC"),
        ('value.join(", ")', ["a", "b"], "a, b"),
        ("value.join()", ["a", "b"], "ab"),
    ],
)
def test_extension_function(source: str, value: object, expected: object) -> None:
    assert run(source, value=value) == expected


def test_extension_global_style() -> None:
    assert run("toUpperCase(value)", value="ada") == "ADA"
    assert run('join(value, "-")', value=["a", "b"]) == "a-b"


def test_null_receiver() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value.toUpperCase()", value=None)
    assert str(caught.value) == "toUpperCase() called on null; expected string"


def test_null_literal_receiver() -> None:
    with pytest.raises(EvaluationError, match=r"^toUpperCase\(\) called on null"):
        run("null.toUpperCase()")


def test_wrong_receiver_type() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value.trim()", value=3)
    assert str(caught.value) == "trim() called on int; expected string"


def test_wrong_argument_type() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value.substring(1.0)", value="hello")
    assert str(caught.value) == "substring(): start is double; expected int"


def test_wrong_argument_count() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value.toUpperCase(1)", value="x")
    assert str(caught.value) == "toUpperCase() takes 0 argument(s) after the receiver, got 1"


def test_join_needs_strings() -> None:
    with pytest.raises(EvaluationError) as caught:
        run('value.join("-")', value=["a", 1])
    assert str(caught.value) == "join(): element 1 is int; expected string"


# --------------------------------------------------------------------------- compile errors


def test_syntax_error_message() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("value +")
    assert str(caught.value) == (
        "CEL syntax error at line 1, column 7: unexpected end of expression"
    )


def test_syntax_error_bad_character() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("value = 1")
    assert str(caught.value) == "CEL syntax error at line 1, column 7: unexpected character '='"


def test_expression_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="syntax error"):
        compile_expression("(")


def test_empty_expression() -> None:
    with pytest.raises(ExpressionError, match=r"^CEL expression is empty$"):
        compile_expression("  ")


def test_unknown_method_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("value.toTitleCase()")
    assert str(caught.value) == "unknown function 'toTitleCase' at line 1, column 7"


def test_unknown_global_function_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("capitalize(value)")
    assert str(caught.value) == "unknown function 'capitalize' at line 1, column 1"


def test_python_injection_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("__import__('os').system('x')")
    assert str(caught.value) == "unknown function '__import__' at line 1, column 1"


def test_python_attributes_are_not_reachable() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value.__class__", value="x")
    assert str(caught.value) == (
        "cannot select field '__class__' from string (only maps have fields)"
    )


def test_has_needs_a_field_selection() -> None:
    with pytest.raises(ExpressionError, match=r"^has\(\) takes exactly one field selection"):
        compile_expression("has(value)")


def test_macro_arity_is_checked() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("value.map(x)")
    assert str(caught.value) == "map() takes 2 argument(s), got 1 at line 1, column 7"


def test_compile_is_cached() -> None:
    assert compile_expression("value + 1") is compile_expression("value + 1")
    assert isinstance(compile_expression("value + 1"), CelProgram)


# --------------------------------------------------------------------------- run-time errors


def test_missing_variable_is_named() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value + bonus", value=1)
    assert str(caught.value) == "undeclared variable 'bonus'"


def test_missing_key() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("record.phone", record=RECORD)
    assert str(caught.value) == "no such key: 'phone'"


def test_division_by_zero() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value / 0", value=5)
    assert str(caught.value) == "division by zero"


def test_type_mismatch() -> None:
    with pytest.raises(EvaluationError) as caught:
        run('value + "a"', value=1)
    assert str(caught.value) == "no such overload: int + string"


def test_mixed_int_and_double_arithmetic() -> None:
    with pytest.raises(EvaluationError, match=r"^no such overload: int / double \(CEL does not"):
        run("value / 2.0", value=5)


def test_bad_conversion() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("int(value)", value="x")
    assert str(caught.value) == "invalid value: invalid literal for int() with base 10: 'x'"


def test_int_overflow() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("value + 1", value=2**63 - 1)
    assert str(caught.value) == "overflow in int + int"


# --------------------------------------------------------------------------- variables


def test_variables_lists_free_identifiers() -> None:
    program = compile_expression('record.first_name + " " + last_name + value.trim()')
    assert program.variables == frozenset({"record", "last_name", "value"})


def test_variables_excludes_comprehension_variables_and_builtins() -> None:
    program = compile_expression("items.filter(x, x > limit).map(y, string(y)).size() > 0")
    assert program.variables == frozenset({"items", "limit"})


def test_variables_excludes_type_names() -> None:
    assert compile_expression("type(value) == int").variables == frozenset({"value"})
