"""Five-field cron expressions, checked field by field so that a mistake is named precisely.

croniter decides what a valid expression is (Dagster schedules with it); this module only finds
*which* field is wrong and says why (`hour 25 is out of range 0-23`), refuses what croniter lets
through but cannot be meant (a step larger than its field: `*/61` fires once an hour, at
minute 0), and what Dagster refuses (anything but five fields) or cannot schedule (a date that
never comes, like the 30th of February).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, croniter

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

FIVE_FIELDS = ("use five fields 'minute hour day-of-month month day-of-week', like "
               "'0 * * * *' (hourly)")


@dataclass(frozen=True)
class CronField:
    name: str
    low: int
    high: int
    #: the largest step that fires more than once within the field
    max_step: int
    #: names accepted for values (months, days), lowercase, numbered from `name_base`
    names: tuple[str, ...] = ()
    name_base: int = 0
    #: how the allowed values are said in a message
    shown: str = ""

    @property
    def range_text(self) -> str:
        return self.shown or f"{self.low}-{self.high}"


FIELDS = (
    CronField("minute", 0, 59, 59),
    CronField("hour", 0, 23, 23),
    CronField("day-of-month", 1, 31, 30),
    CronField("month", 1, 12, 11, MONTHS, 1, "1-12 (or JAN-DEC)"),
    CronField("day-of-week", 0, 7, 6, DAYS, 0, "0-7 (0 and 7 are Sunday, or SUN-SAT)"),
)

# `a`, `a-b`, `*`, `?` with an optional `/step`
_ITEM = re.compile(r"^(?:(?P<any>[*?])|(?P<a>[0-9A-Za-z]+)(?:-(?P<b>[0-9A-Za-z]+))?)"
                   r"(?:/(?P<step>[^/]*))?$")


def _value(field: CronField, token: str) -> tuple[int | None, str | None]:
    """The number a token names, or the reason it names none."""
    if token.isdigit():
        number = int(token)
        if not field.low <= number <= field.high:
            return None, f"{field.name} {number} is out of range {field.range_text}"
        return number, None
    if token.lower() in field.names:
        return field.names.index(token.lower()) + field.name_base, None
    return None, _not_valid(field, token)


def _not_valid(field: CronField, text: str) -> str:
    return (f"{field.name} '{text}' is not valid: use {field.range_text}, a range (like "
            f"{field.low}-{field.low + 1}), a list (like {field.low},{field.low + 2}) or a step "
            "(like */2)")


def _item_problems(field: CronField, item: str) -> list[str] | None:
    """What is wrong with one comma-separated item; None when this module cannot read it
    (croniter's extensions: `L`, `15W`, `5#3`)."""
    match = _ITEM.match(item)
    if match is None or (match["any"] == "?" and field.name not in ("day-of-month",
                                                                      "day-of-week")):
        return None
    found: list[str] = []
    values: list[int] = []
    for token in (match["a"], match["b"]):
        if token is None:
            continue
        if not token.isdigit() and token.lower() not in field.names:
            return None  # `L`, `15W`: croniter's to judge
        number, problem = _value(field, token)
        if problem:
            found.append(problem)
        elif number is not None:
            values.append(number)
    step = match["step"]
    if step is not None:
        if not step.isdigit():
            found.append(f"{field.name} step '{step}' is not a whole number")
        elif not 1 <= int(step) <= field.max_step:
            found.append(f"{field.name} step {int(step)} is out of range 1-{field.max_step}")
    return found


def _never_runs(text: str) -> bool:
    try:
        croniter(text, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        return True
    return False


def cron_problem(text: str) -> str | None:
    """Why `text` cannot schedule a sync (one sentence), or None when it can."""
    fields = text.split()
    if len(fields) != 5:
        return f"'{text}' is not a valid cron expression: {FIVE_FIELDS}"
    found: list[str] = []
    for index, (field, value) in enumerate(zip(FIELDS, fields, strict=True)):
        here: list[str] = []
        unread = False
        for item in value.split(","):
            problems = _item_problems(field, item) if item else [_not_valid(field, value)]
            if problems is None:
                unread = True
            else:
                here.extend(problems)
        if unread and not here and not _field_valid(fields, index):
            here.append(_not_valid(field, value))
        found.extend(here)
    if not found and not croniter.is_valid(text):
        # every field reads well alone; what croniter refuses is their combination
        found.append(FIVE_FIELDS)
    if found:
        return f"'{text}' is not a valid cron expression: " + "; ".join(dict.fromkeys(found))
    if _never_runs(text):
        return (f"'{text}' never runs: its day-of-month does not occur in its months (like "
                "the 30th of February)")
    return None


def _field_valid(fields: list[str], index: int) -> bool:
    """Whether croniter accepts this field with every other field `*`."""
    alone = ["*"] * 5
    alone[index] = fields[index]
    return bool(croniter.is_valid(" ".join(alone)))
