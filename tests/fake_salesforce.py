"""A stateful fake of a Salesforce org on 127.0.0.1 (tests/fake_api.py), every request and answer
checked against tests/apis/salesforce.openapi.json (written from Salesforce's REST API and Bulk
API 2.0 developer guides, one cited page per operation).

What it models:
- OAuth2 at /services/oauth2/token (client credentials, refresh token, username-password);
  tokens it issued until `expire_tokens()`, then 401 INVALID_SESSION_ID.
- sObjects (`define`) with describe; records with Id, IsDeleted, SystemModstamp (to the
  second, stamped on every write), a recycle bin for deletes (queryAll, getDeleted).
- SOQL: only the subset the connector emits (SELECT fields or COUNT() FROM one object, WHERE
  with AND, OR in parentheses, =, !=, <, <=, >, >=, IN, null, ORDER BY with ASC/DESC and NULLS
  FIRST/LAST, LIMIT). Anything else is answered MALFORMED_QUERY and recorded as a violation:
  the fake refuses loudly rather than guess. Text compares without regard to case, as in
  Salesforce. Pages of `query_page` records, followed by nextRecordsUrl.
- sObject Collections create, update, upsert by an External ID field and delete
  (allOrNone false): per-record results; at most 200 records a call.
- Bulk API 2.0 ingest jobs: create, upload CSV, UploadComplete, processing after `bulk_delay`
  seconds in the background (as the org does, whether or not anyone polls), job info, the
  list of jobs, successful / failed / unprocessed results as CSV. `bulk_fail_after` makes the
  next job fail after that many records (the rest unprocessed).
- Validation rules (`refuse_negative`), the org's daily request limit (`daily_limit`: 403
  REQUEST_LIMIT_EXCEEDED past it) and `Sforce-Limit-Info: api-usage=N/M` on every answer of
  the data API; 429 with Retry-After via FakeApi.rate_limit / fail_next.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request

from fake_api import FakeApi, OpenApiDescription

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line a request otherwise

SPEC = Path(__file__).parent / "apis" / "salesforce.openapi.json"
VERSION = "62.0"
CSV_NULL = "#N/A"

Answer = tuple[int, Any, Mapping[str, str]]


def sf_time(moment: datetime) -> str:
    """An instant as Salesforce writes it: 2024-01-01T10:00:00.000+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def error(code: str, message: str) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code}]


class SoqlError(Exception):
    def __init__(self, code: str, message: str, unsupported: bool = False) -> None:
        self.code, self.message, self.unsupported = code, message, unsupported
        super().__init__(message)


#: when the fake's org was created (no record was physically deleted before)
ORG_CREATED = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class SObject:
    name: str
    #: field name -> describe entry (type, scale, externalId, unique, createable, ...)
    fields: dict[str, dict[str, Any]]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (field, code, message, test) validation rules
    rules: list[tuple[str, str, str, Callable[[Any], bool]]] = field(default_factory=list)

    #: unique and External ID fields: comparable value -> Ids of live records holding it
    index: dict[str, dict[Any, set[str]]] = field(default_factory=dict)
    #: when the recycle bin was last emptied (getDeleted's earliestDateAvailable after it)
    purged_at: datetime | None = None

    def live(self) -> Iterator[dict[str, Any]]:
        return (r for r in self.records.values() if not r["IsDeleted"])

    def indexed(self) -> list[str]:
        return [n for n, m in self.fields.items() if m.get("unique") or m.get("externalId")]

    def put(self, record: dict[str, Any], values: Mapping[str, Any]) -> None:
        """Write values into a live record, keeping the index."""
        for name in self.indexed():
            if name in values:
                self._unindex(record, name)
        record.update(values)
        for name in self.indexed():
            if name in values and record.get(name) is not None:
                held = _comparable(record[name], self.fields[name]["type"])
                self.index.setdefault(name, {}).setdefault(held, set()).add(record["Id"])

    def drop(self, record: dict[str, Any]) -> None:
        """Move a record to the recycle bin."""
        for name in self.indexed():
            self._unindex(record, name)
        record["IsDeleted"] = True

    def _unindex(self, record: Mapping[str, Any], name: str) -> None:
        if record.get(name) is not None:
            held = _comparable(record[name], self.fields[name]["type"])
            self.index.get(name, {}).get(held, set()).discard(record["Id"])

    def find(self, name: str, value: Any) -> list[dict[str, Any]]:
        """Live records whose indexed field holds this value (as Salesforce compares)."""
        held = _comparable(value, self.fields[name]["type"])
        return [self.records[i] for i in sorted(self.index.get(name, {}).get(held, ()))]


STANDARD = {
    "Id": {"type": "id", "createable": False, "updateable": False, "nillable": False,
           "idLookup": True, "unique": False},
    "IsDeleted": {"type": "boolean", "createable": False, "updateable": False,
                  "nillable": False},
    "SystemModstamp": {"type": "datetime", "createable": False, "updateable": False,
                       "nillable": False},
    "CreatedDate": {"type": "datetime", "createable": False, "updateable": False,
                    "nillable": False},
    "LastModifiedDate": {"type": "datetime", "createable": False, "updateable": False,
                         "nillable": False},
}
KIND_TYPES = {"text": ("string", None), "integer": ("double", 0), "float": ("double", 2),
              "datetime": ("datetime", None), "date": ("date", None),
              "boolean": ("boolean", None)}


# -- SOQL: the subset the connector emits ---------------------------------------------------
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<datetime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d))
     |(?P<date>\d{4}-\d\d-\d\d)
     |(?P<number>-?\d+(?:\.\d+)?)
     |(?P<string>'(?:[^'\\]|\\.)*')
     |(?P<op><=|>=|!=|=|<|>|\(|\)|,)
     |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'",
            "\\": "\\", "_": "\\_", "%": "\\%"}


def tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SoqlError("MALFORMED_QUERY", f"unexpected text at {text[pos:pos + 20]!r}",
                            unsupported=True)
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)  # type: ignore[arg-type]
        if kind == "string":
            body, value, i = raw[1:-1], "", 0
            while i < len(body):
                if body[i] == "\\":
                    value += _ESCAPES.get(body[i + 1], body[i + 1])
                    i += 2
                else:
                    value += body[i]
                    i += 1
            out.append(("string", value))
        elif kind == "datetime":
            out.append(("datetime", datetime.fromisoformat(raw.replace("Z", "+00:00"))))
        elif kind == "date":
            out.append(("date", date.fromisoformat(raw)))
        elif kind == "number":
            out.append(("number", float(raw) if "." in raw else int(raw)))
        elif kind == "word":
            upper = raw.upper()
            if upper in ("TRUE", "FALSE"):
                out.append(("bool", upper == "TRUE"))
            elif upper == "NULL":
                out.append(("null", None))
            else:
                out.append(("word", raw))
        else:
            out.append(("op", raw))
    return out


@dataclass
class Query:
    obj: str
    fields: list[str] | None  # None: COUNT()
    where: Any
    order: list[tuple[str, bool, bool]]  # (field, descending, nulls first)
    limit: int | None


class Parser:
    KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "IN", "ORDER", "BY", "ASC",
                          "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "COUNT"})

    def __init__(self, text: str) -> None:
        self.toks = tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query", unsupported=True)
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and str(tok[1]).upper() == word:
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.keyword(word):
            raise SoqlError("MALFORMED_QUERY", f"expected {word} at {self.peek()}",
                            unsupported=True)

    def op(self, text: str) -> bool:
        tok = self.peek()
        if tok == ("op", text):
            self.i += 1
            return True
        return False

    def name(self) -> str:
        kind, value = self.take()
        if kind != "word" or str(value).upper() in self.KEYWORDS:
            raise SoqlError("MALFORMED_QUERY", f"expected a field name, got {value!r}",
                            unsupported=True)
        return str(value)

    def query(self) -> Query:
        self.expect("SELECT")
        fields: list[str] | None
        if self.keyword("COUNT"):
            if not (self.op("(") and self.op(")")):
                raise SoqlError("MALFORMED_QUERY", "only COUNT() is modelled", True)
            fields = None
        else:
            fields = [self.name()]
            while self.op(","):
                fields.append(self.name())
        self.expect("FROM")
        obj = self.name()
        where = self.disjunction() if self.keyword("WHERE") else None
        order = []
        if self.keyword("ORDER"):
            self.expect("BY")
            while True:
                name = self.name()
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                nulls_first = not descending
                if self.keyword("NULLS"):
                    if self.keyword("FIRST"):
                        nulls_first = True
                    else:
                        self.expect("LAST")
                        nulls_first = False
                order.append((name, descending, nulls_first))
                if not self.op(","):
                    break
        limit = None
        if self.keyword("LIMIT"):
            kind, value = self.take()
            if kind != "number" or not isinstance(value, int) or value < 1:
                raise SoqlError("MALFORMED_QUERY", "LIMIT takes a positive integer", True)
            limit = value
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected {self.peek()}", unsupported=True)
        return Query(obj, fields, where, order, limit)

    def disjunction(self) -> Any:
        """a OR b OR ..., or a AND b AND ...: SOQL wants parentheses to mix the two."""
        first = self.factor()
        items, joiner = [first], None
        while True:
            if self.keyword("AND"):
                word = "and"
            elif self.keyword("OR"):
                word = "or"
            else:
                break
            if joiner is not None and joiner != word:
                raise SoqlError("MALFORMED_QUERY", "AND and OR mixed without parentheses",
                                unsupported=True)
            joiner = word
            items.append(self.factor())
        return items[0] if joiner is None else (joiner, items)

    def factor(self) -> Any:
        if self.op("("):
            inner = self.disjunction()
            if not self.op(")"):
                raise SoqlError("MALFORMED_QUERY", "missing )", unsupported=True)
            return inner
        name = self.name()
        if self.keyword("IN"):
            if not self.op("("):
                raise SoqlError("MALFORMED_QUERY", "IN wants (", unsupported=True)
            values = [self.literal()]
            while self.op(","):
                values.append(self.literal())
            if not self.op(")"):
                raise SoqlError("MALFORMED_QUERY", "IN list not closed", unsupported=True)
            return ("in", name, values)
        kind, operator = self.take()
        if kind != "op" or operator not in ("=", "!=", "<", "<=", ">", ">="):
            raise SoqlError("MALFORMED_QUERY", f"unsupported operator {operator!r}", True)
        return ("cmp", name, operator, self.literal())

    def literal(self) -> tuple[str, Any]:
        kind, value = self.take()
        if kind not in ("string", "number", "datetime", "date", "bool", "null"):
            raise SoqlError("MALFORMED_QUERY", f"expected a value, got {value!r}", True)
        return kind, value


_LITERAL_FOR = {"string": "string", "email": "string", "id": "string", "double": "number",
                "int": "number", "datetime": "datetime", "date": "date", "boolean": "bool"}


def _comparable(value: Any, ftype: str) -> Any:
    if isinstance(value, str) and ftype != "id":
        return value.casefold()
    return value


class FakeSalesforce:
    """The org: its sObjects, tokens, jobs and limits, served by a FakeApi."""

    def __init__(self, *, client_id: str = "3MVG9fake.client", client_secret: str = "",
                 refresh_token: str = "", username: str = "", password: str = "",
                 query_page: int = 2000, bulk_delay: float = 0.05,
                 daily_limit: int = 1_000_000, validate: bool = True) -> None:
        self.api = FakeApi(OpenApiDescription(SPEC) if validate else None, "salesforce")
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token, self.username, self.password = refresh_token, username, password
        self.query_page = query_page
        self.bulk_delay = bulk_delay
        self.daily_limit = daily_limit
        self.bulk_fail_after: int | None = None
        #: the instance_url token answers name (None: this fake's own URL)
        self.instance_url: str | None = None
        #: Retry-After of each of the next write calls to answer 429 (`fail_writes`)
        self.write_faults: list[float | None] = []
        self.used = 0
        self.objects: dict[str, SObject] = {}
        self.tokens: set[str] = set()
        self.grants: list[str] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self.collection_sizes: list[int] = []
        self._ids = itertools.count(1)
        self._timers: list[threading.Timer] = []
        self._routes()

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> FakeSalesforce:
        self.api.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for timer in self._timers:
            timer.cancel()
        self.api.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.api.url

    def expire_tokens(self) -> None:
        with self.api.lock:
            self.tokens.clear()

    def fail_writes(self, count: int, retry_after: float | None) -> None:
        """Answer the next `count` writing calls (POST, PATCH, PUT, DELETE of the data API)
        429 REQUEST_LIMIT_EXCEEDED with this Retry-After."""
        with self.api.lock:
            self.write_faults = [retry_after] * count

    def submit_job(self, name: str, operation: str, external: str | None, data: str
                   ) -> dict[str, Any]:
        """An ingest job another client created, uploaded and closed (a run killed right
        after): the org processes it after `bulk_delay`, as the routes' jobs."""
        with self.api.lock:
            job = self._new_job(self.objects[name], operation, external)
            job["data"] = data
            job["state"] = "UploadComplete"
            self._start(job["id"])
            return job

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every closed ingest job is processed."""
        end = time.monotonic() + timeout
        while any(j["state"] in ("UploadComplete", "InProgress") for j in self.jobs.values()):
            if time.monotonic() > end:
                raise AssertionError("ingest jobs still processing")
            time.sleep(0.01)

    # -- the org's data -------------------------------------------------------------------------
    def define(self, name: str, fields: Mapping[str, str], external: Sequence[str] = (),
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> SObject:
        """An sObject with fields of portable kinds; `external` are unique External IDs."""
        meta = {n: dict(m) for n, m in STANDARD.items()}
        for fname, kind in fields.items():
            ftype, scale = KIND_TYPES[kind]
            entry: dict[str, Any] = {"type": ftype, "createable": True, "updateable": True,
                                     "nillable": fname not in external,
                                     "externalId": fname in external,
                                     "unique": fname in external,
                                     "idLookup": fname in external}
            if scale is not None:
                entry.update(scale=scale, precision=18)
            meta[fname] = entry
        obj = SObject(name, meta)
        if refuse_negative:
            obj.rules.append((refuse_negative, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                              f"{refuse_negative} must be at least 0",
                              lambda v: v is not None and v < 0))
        with self.api.lock:
            self.objects[name] = obj
            # one load, one stamp: tests count records by the cursor's second, and a load
            # straddling a second's edge would make those counts depend on the clock
            loaded = self._now()
            for row in rows:
                self._insert(obj, {k: self._coerce(obj, k, v) for k, v in row.items()
                                   if k in obj.fields}, loaded)
        return obj

    def rows(self, name: str, fields: Sequence[str], key: str) -> list[dict[str, Any]]:
        with self.api.lock:
            found = [{f: self._plain(r.get(f)) for f in fields}
                     for r in self.objects[name].live()]
        return sorted(found, key=lambda r: (r[key] is not None, r[key]))

    def change(self, name: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        with self.api.lock:
            obj = self.objects[name]
            for record in obj.live():
                if all(self._plain(record.get(k)) == v for k, v in key.items()):
                    obj.put(record, {k: self._coerce(obj, k, v) for k, v in values.items()})
                    self._stamp(record)

    def delete_where(self, name: str, key: Mapping[str, Any]) -> None:
        with self.api.lock:
            obj = self.objects[name]
            for record in list(obj.live()):
                if all(self._plain(record.get(k)) == v for k, v in key.items()):
                    obj.drop(record)
                    self._stamp(record)

    def empty_recycle_bin(self, name: str) -> None:
        """An administrator empties the recycle bin: deleted records are gone for good, and
        neither queryAll nor getDeleted reports deletes before now any more."""
        with self.api.lock:
            obj = self.objects[name]
            for record_id in [i for i, r in obj.records.items() if r["IsDeleted"]]:
                del obj.records[record_id]
            obj.purged_at = self._now()

    @staticmethod
    def _plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def _coerce(self, obj: SObject, name: str, value: Any) -> Any:
        """A value given by a test as the field stores it."""
        ftype = obj.fields[name]["type"]
        if value is None:
            return None
        if ftype == "datetime" and isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.astimezone(UTC).replace(microsecond=0)
        if ftype == "double" and obj.fields[name].get("scale") == 0:
            return int(value)
        return value

    def _now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def _stamp(self, record: dict[str, Any]) -> None:
        record["SystemModstamp"] = record["LastModifiedDate"] = self._now()

    def _new_id(self, obj: SObject) -> str:
        return f"a0{len(obj.name) % 10}{next(self._ids):012d}AAA"

    def _insert(self, obj: SObject, values: Mapping[str, Any],
                now: datetime | None = None) -> str:
        now = now or self._now()
        record_id = self._new_id(obj)
        record: dict[str, Any] = {n: None for n in obj.fields}
        record.update(Id=record_id, IsDeleted=False, SystemModstamp=now, CreatedDate=now,
                      LastModifiedDate=now)
        obj.records[record_id] = record
        obj.put(record, values)
        return record_id

    # -- values on the wire ---------------------------------------------------------------------
    def _from_json(self, obj: SObject, name: str, value: Any) -> Any:
        """A JSON value for a field, or SoqlError-like (code, message) refusal."""
        meta = obj.fields[name]
        ftype = meta["type"]
        if value is None:
            return None
        ok = {"string": str, "email": str, "id": str, "boolean": bool,
              "datetime": str, "date": str}.get(ftype)
        if ftype == "double":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}: not a number")
            return int(value) if meta.get("scale") == 0 else float(value)
        if ok is None or not isinstance(value, ok):
            raise ValueError(f"{name}: not a {ftype}")
        if ftype == "datetime":
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(
                UTC).replace(microsecond=0)
        if ftype == "date":
            return date.fromisoformat(value)
        return value

    def _from_csv(self, obj: SObject, name: str, text: str) -> Any:
        if text == CSV_NULL:
            return None
        ftype = obj.fields[name]["type"]
        if ftype == "double":
            return self._from_json(obj, name, float(text))
        if ftype == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{name}: not a boolean")
            return text.lower() == "true"
        return self._from_json(obj, name, text)

    @staticmethod
    def _to_json(value: Any) -> Any:
        if isinstance(value, datetime):
            return sf_time(value)
        if isinstance(value, date):
            return value.isoformat()
        return value

    def _record_json(self, obj: SObject, record: Mapping[str, Any],
                     fields: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {
            "type": obj.name,
            "url": f"/services/data/v{VERSION}/sobjects/{obj.name}/{record['Id']}"}}
        for name in fields:
            out[name] = self._to_json(record.get(name))
        return out

    # -- writes of one record -------------------------------------------------------------------
    def _check(self, obj: SObject, values: Mapping[str, Any], creating: bool,
               record_id: str | None = None) -> list[dict[str, Any]] | None:
        """The errors of a write of these values, or None."""
        for name in values:
            meta = obj.fields.get(name)
            if meta is None:
                return [{"statusCode": "INVALID_FIELD", "message":
                         f"No such column '{name}' on sobject of type {obj.name}",
                         "fields": [name]}]
            if not meta.get("createable" if creating else "updateable"):
                return [{"statusCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
                         "message": f"Unable to create/update fields: {name}",
                         "fields": [name]}]
        for fname, code, message, test in obj.rules:
            if fname in values and test(values[fname]):
                return [{"statusCode": code, "message": message, "fields": [fname]}]
        for name, meta in obj.fields.items():
            if meta.get("unique") and values.get(name) is not None:
                for other in obj.find(name, values[name]):
                    if other["Id"] != record_id:
                        return [{"statusCode": "DUPLICATE_VALUE", "message":
                                 f"duplicate value found: {name} duplicates value on record "
                                 f"with id: {other['Id']}", "fields": [name]}]
        return None

    def _values(self, obj: SObject, record: Mapping[str, Any], skip: Sequence[str]
                ) -> dict[str, Any] | list[dict[str, Any]]:
        out = {}
        for name, value in record.items():
            if name in ("attributes", *skip):
                continue
            if name not in obj.fields:
                return [{"statusCode": "INVALID_FIELD", "message":
                         f"No such column '{name}' on sobject of type {obj.name}",
                         "fields": [name]}]
            try:
                out[name] = self._from_json(obj, name, value)
            except ValueError as exc:
                return [{"statusCode": "JSON_PARSER_ERROR", "message": str(exc),
                         "fields": [name]}]
        return out

    def upsert_one(self, obj: SObject, external: str, values: Mapping[str, Any]
                   ) -> dict[str, Any]:
        key = values.get(external)
        if key is None:
            return {"id": None, "success": False, "errors": [{
                "statusCode": "MISSING_ARGUMENT", "message": f"{external} not specified",
                "fields": [external]}]}
        matches = obj.find(external, key)
        if len(matches) > 1:
            return {"id": None, "success": False, "errors": [{
                "statusCode": "DUPLICATE_EXTERNAL_ID", "message":
                f"{external}: more than one record found for external id field: "
                f"{[m['Id'] for m in matches]}", "fields": [external]}]}
        target = matches[0]["Id"] if matches else None
        problems = self._check(obj, values, creating=target is None, record_id=target)
        if problems:
            return {"id": None, "success": False, "errors": problems}
        if target is None:
            return {"id": self._insert(obj, values), "success": True, "errors": [],
                    "created": True}
        obj.put(obj.records[target], values)
        self._stamp(obj.records[target])
        return {"id": target, "success": True, "errors": [], "created": False}

    def update_one(self, obj: SObject, record_id: str, values: Mapping[str, Any]
                   ) -> dict[str, Any]:
        record = obj.records.get(record_id)
        if record is None or record["IsDeleted"]:
            code = "ENTITY_IS_DELETED" if record else "INVALID_CROSS_REFERENCE_KEY"
            return {"id": record_id, "success": False, "errors": [{
                "statusCode": code, "message": "entity is deleted" if record
                else "invalid cross reference id", "fields": []}]}
        problems = self._check(obj, values, creating=False, record_id=record_id)
        if problems:
            return {"id": record_id, "success": False, "errors": problems}
        obj.put(record, values)
        self._stamp(record)
        return {"id": record_id, "success": True, "errors": []}

    def delete_one(self, record_id: str) -> dict[str, Any]:
        for obj in self.objects.values():
            record = obj.records.get(record_id)
            if record is not None:
                if record["IsDeleted"]:
                    break
                obj.drop(record)
                self._stamp(record)
                return {"id": record_id, "success": True, "errors": []}
        return {"id": record_id, "success": False, "errors": [{
            "statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted",
            "fields": []}]}

    # -- SOQL -----------------------------------------------------------------------------------
    def run_query(self, text: str, all_rows: bool) -> dict[str, Any]:
        query = Parser(text).query()
        obj = self.objects.get(query.obj)
        if obj is None:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.obj}' is not supported.")
        for name in [*(query.fields or []), *(o[0] for o in query.order),
                     *self._where_fields(query.where)]:
            if name not in obj.fields:
                raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity "
                                                 f"'{obj.name}'")
        keep = self._compile(obj, query.where)
        records = [r for r in (obj.records.values() if all_rows else obj.live()) if keep(r)]
        for name, descending, nulls_first in reversed(query.order):
            ftype = obj.fields[name]["type"]
            present = [r for r in records if r.get(name) is not None]
            absent = [r for r in records if r.get(name) is None]
            present.sort(key=lambda r: _comparable(r[name], ftype), reverse=descending)
            records = absent + present if nulls_first else present + absent
        if query.limit is not None:
            records = records[:query.limit]
        if query.fields is None:
            return {"totalSize": len(records), "done": True, "records": []}
        out = [self._record_json(obj, r, query.fields) for r in records]
        return self._page(out, len(out))

    def _page(self, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
        page, rest = records[:self.query_page], records[self.query_page:]
        answer: dict[str, Any] = {"totalSize": total, "done": not rest, "records": page}
        if rest:
            locator = f"01gFAKE{next(self._ids):08d}-{self.query_page}"
            self.locators[locator] = rest
            answer["nextRecordsUrl"] = f"/services/data/v{VERSION}/query/{locator}"
        return answer

    def _where_fields(self, node: Any) -> list[str]:
        if node is None:
            return []
        if node[0] in ("and", "or"):
            return [n for item in node[1] for n in self._where_fields(item)]
        return [node[1]]

    def _literal(self, obj: SObject, name: str, literal: tuple[str, Any]) -> Any:
        kind, value = literal
        if kind == "null":
            return None
        ftype = obj.fields[name]["type"]
        if _LITERAL_FOR.get(ftype) != kind:
            raise SoqlError("INVALID_FIELD", f"value of type {kind} for field {name} of type "
                                             f"{ftype}", unsupported=True)
        return _comparable(value, ftype)

    def _compile(self, obj: SObject, node: Any) -> Callable[[Mapping[str, Any]], bool]:
        """A WHERE tree as a test of one record (literals converted once)."""
        if node is None:
            return lambda _r: True
        if node[0] in ("and", "or"):
            parts = [self._compile(obj, n) for n in node[1]]
            if node[0] == "and":
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        name = node[1]
        ftype = obj.fields[name]["type"]
        if node[0] == "in":
            members = {self._literal(obj, name, v) for v in node[2]} - {None}
            return lambda r: _comparable(r.get(name), ftype) in members
        _, _, op, literal = node
        value = self._literal(obj, name, literal)
        if value is None:
            if op not in ("=", "!="):
                raise SoqlError("MALFORMED_QUERY", "null compared by order", unsupported=True)
            return lambda r: (r.get(name) is None) == (op == "=")
        test = {"=": lambda a: a == value, "!=": lambda a: a != value,
                "<": lambda a: a < value, "<=": lambda a: a <= value,
                ">": lambda a: a > value, ">=": lambda a: a >= value}[op]

        def compare(record: Mapping[str, Any]) -> bool:
            held = _comparable(record.get(name), ftype)
            return op == "!=" if held is None else bool(test(held))
        return compare

    # -- Bulk API 2.0 ---------------------------------------------------------------------------
    def _job_info(self, job: Mapping[str, Any]) -> dict[str, Any]:
        info = {k: job[k] for k in ("id", "operation", "object", "state", "createdDate",
                                    "systemModstamp", "contentType", "lineEnding",
                                    "columnDelimiter", "concurrencyMode", "apiVersion",
                                    "jobType", "createdById")}
        if job.get("externalIdFieldName"):
            info["externalIdFieldName"] = job["externalIdFieldName"]
        info["numberRecordsProcessed"] = len(job["successful"]) + len(job["failed"])
        info["numberRecordsFailed"] = len(job["failed"])
        if job.get("errorMessage"):
            info["errorMessage"] = job["errorMessage"]
        return info

    def _new_job(self, obj: SObject, operation: str, external: str | None) -> dict[str, Any]:
        job_id = f"750FAKE{next(self._ids):08d}AAA"
        now = sf_time(self._now())
        job = {"id": job_id, "operation": operation, "object": obj.name, "state": "Open",
               "createdDate": now, "systemModstamp": now, "contentType": "CSV",
               "lineEnding": "LF", "columnDelimiter": "COMMA", "concurrencyMode": "Parallel",
               "apiVersion": float(VERSION), "jobType": "V2Ingest", "createdById": "005FAKE",
               "externalIdFieldName": external, "data": "", "successful": [], "failed": []}
        self.jobs[job_id] = job
        return job

    def _start(self, job_id: str) -> None:
        """Process a closed job in the background, `bulk_delay` from now."""
        timer = threading.Timer(self.bulk_delay / 2, self._process, (job_id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _process(self, job_id: str) -> None:
        with self.api.lock:
            job = self.jobs[job_id]
            if job["state"] != "UploadComplete":
                return
            job["state"] = "InProgress"
        time.sleep(self.bulk_delay / 2)
        with self.api.lock:
            obj = self.objects[job["object"]]
            reader = csv.reader(io.StringIO(job["data"]))
            header = next(reader, [])
            rows = [r for r in reader if r]
            job["header"] = header
            unknown = [h for h in header if h not in obj.fields]
            fail_after = self.bulk_fail_after
            self.bulk_fail_after = None
            if unknown:
                job.update(state="Failed", errorMessage="InvalidBatch : Field name not found "
                                                        f": {unknown[0]}", unprocessed=rows)
                return
            for n, row in enumerate(rows):
                if fail_after is not None and n >= fail_after:
                    job["unprocessed"] = rows[n:]
                    job.update(state="Failed", errorMessage="InternalServerError : the job "
                                                            "was interrupted")
                    return
                self._process_row(obj, job, dict(zip(header, row, strict=True)), row)
            job["state"] = "JobComplete"

    def _process_row(self, obj: SObject, job: dict[str, Any], cells: dict[str, str],
                     row: list[str]) -> None:
        operation = job["operation"]
        try:
            values = {n: self._from_csv(obj, n, t) for n, t in cells.items()
                      if t != "" and n != "Id"}
        except ValueError as exc:
            job["failed"].append(("", f"INVALID_FIELD:{exc}", row))
            return
        if operation == "upsert":
            answer = self.upsert_one(obj, job["externalIdFieldName"], values)
        elif operation == "update":
            answer = self.update_one(obj, cells.get("Id", ""), values)
        elif operation == "delete":
            answer = self.delete_one(cells.get("Id", ""))
        else:  # insert
            problems = self._check(obj, values, creating=True)
            answer = ({"id": None, "success": False, "errors": problems} if problems else
                      {"id": self._insert(obj, values), "success": True, "created": True})
        if answer["success"]:
            job["successful"].append((answer["id"], answer.get("created", False), row))
        else:
            first = answer["errors"][0]
            fields = ":".join(first.get("fields") or [])
            job["failed"].append((answer.get("id") or "",
                                  f"{first['statusCode']}:{first['message']}"
                                  + (f":{fields}" if fields else ""), row))

    def _results_csv(self, job: Mapping[str, Any], kind: str) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = job.get("header") or []
        if kind == "successfulResults":
            writer.writerow(["sf__Id", "sf__Created", *header])
            for record_id, created, row in job["successful"]:
                writer.writerow([record_id, "true" if created else "false", *row])
        elif kind == "failedResults":
            writer.writerow(["sf__Id", "sf__Error", *header])
            for record_id, message, row in job["failed"]:
                writer.writerow([record_id, message, *row])
        else:
            writer.writerow(header)
            for row in job.get("unprocessed", []):
                writer.writerow(row)
        return out.getvalue()

    # -- routes ---------------------------------------------------------------------------------
    def _routes(self) -> None:
        api = self.api
        base = "/services/data/v<version>"

        def data(fn: Callable[..., Answer]) -> Callable[..., Answer]:
            """A data API resource: a token it issued, the daily limit, the usage header."""
            def handler(request: Request, **args: Any) -> Answer:
                auth = request.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                    return 401, error("INVALID_SESSION_ID", "Session expired or invalid"), {}
                with api.lock:
                    self.used += 1
                    used = self.used
                limit = {"Sforce-Limit-Info": f"api-usage={used}/{self.daily_limit}"}
                if used > self.daily_limit:
                    return 403, error("REQUEST_LIMIT_EXCEEDED",
                                      "TotalRequests Limit exceeded."), limit
                args.pop("version", None)
                if request.method != "GET":
                    with api.lock:
                        fault = self.write_faults.pop(0) if self.write_faults else False
                    if fault is not False:
                        return 429, error("REQUEST_LIMIT_EXCEEDED", "rate limited"), {
                            **limit, **({} if fault is None else {"Retry-After": f"{fault:g}"})}
                status, body, headers = fn(request, **args)
                return status, body, {**limit, **headers}
            return handler

        @api.route("POST", "/services/oauth2/token")
        def token(request: Request) -> Answer:
            form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
            grant = form.get("grant_type")
            if form.get("client_id") != self.client_id:
                return 400, {"error": "invalid_client_id",
                             "error_description": "client identifier invalid"}, {}
            good = {
                "client_credentials": form.get("client_secret") == self.client_secret,
                "refresh_token": form.get("refresh_token") == self.refresh_token
                and form.get("client_secret") in (None, self.client_secret),
                "password": form.get("client_secret") == self.client_secret
                and form.get("username") == self.username
                and form.get("password") == self.password,
            }.get(str(grant), False)
            if not good or not (self.client_secret or self.refresh_token):
                return 400, {"error": "invalid_grant",
                             "error_description": "authentication failure"}, {}
            with api.lock:
                issued = f"00DFAKE!{grant}.{next(self._ids):06d}.tok"
                self.tokens.add(issued)
                self.grants.append(str(grant))
            return 200, {"access_token": issued,
                         "instance_url": self.instance_url or self.api.url,
                         "id": f"{self.api.url}/id/00DFAKE/005FAKE", "token_type": "Bearer",
                         "issued_at": str(int(time.time() * 1000)),
                         "signature": f"sig{next(self._ids)}"}, {}

        @api.route("GET", base + "/sobjects/<name>/describe")
        @data
        def describe(request: Request, name: str) -> Answer:
            obj = self.objects.get(name)
            if obj is None:
                return 404, error("NOT_FOUND", "The requested resource does not exist"), {}
            fields = [{"name": n, "label": n, **{k: m.get(k, False) for k in (
                "createable", "updateable", "nillable", "externalId", "unique",
                "idLookup")}, "type": m["type"], **({"scale": m["scale"],
                                                    "precision": m["precision"]}
                                                   if "scale" in m else {})}
                      for n, m in obj.fields.items()]
            return 200, {"name": obj.name, "label": obj.name, "custom": True,
                         "createable": True, "updateable": True, "deletable": True,
                         "queryable": True, "fields": fields}, {}

        def soql(all_rows: bool) -> Callable[..., Answer]:
            def run(request: Request) -> Answer:
                text = request.args.get("q", "")
                try:
                    with api.lock:
                        return 200, self.run_query(text, all_rows), {}
                except SoqlError as exc:
                    if exc.unsupported:
                        api.violations.append(f"SOQL the fake does not model: {text!r}: "
                                              f"{exc.message}")
                    return 400, error(exc.code, exc.message), {}
            return run

        api.route("GET", base + "/query")(data(soql(False)))
        api.route("GET", base + "/queryAll")(data(soql(True)))

        @api.route("GET", base + "/query/<locator>")
        @data
        def more(request: Request, locator: str) -> Answer:
            with api.lock:
                rest = self.locators.pop(locator, None)
                if rest is None:
                    return 400, error("INVALID_QUERY_LOCATOR", "invalid query locator"), {}
                return 200, self._page(rest, len(rest)), {}

        @api.route("GET", base + "/sobjects/<name>/deleted/")
        @data
        def deleted(request: Request, name: str) -> Answer:
            obj = self.objects.get(name)
            if obj is None:
                return 404, error("NOT_FOUND", "The requested resource does not exist"), {}
            start = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
            if end - start <= timedelta(minutes=1):
                # "startDate must chronologically precede endDate by more than one minute"
                api.violations.append(f"getDeleted from {start} to {end}: under a minute")
            if start < self._now() - timedelta(days=15):
                # "Results are returned for no more than 15 days previous"
                api.violations.append(f"getDeleted from {start}: over 15 days ago")
            with api.lock:
                found = [{"id": r["Id"], "deletedDate": sf_time(r["SystemModstamp"])}
                         for r in obj.records.values()
                         if r["IsDeleted"] and start <= r["SystemModstamp"] <= end]
                # the last physical delete: the bin's emptying, else none since the org began
                earliest = obj.purged_at or ORG_CREATED
            return 200, {"deletedRecords": found, "earliestDateAvailable": sf_time(earliest),
                         "latestDateCovered": sf_time(min(end, self._now()))}, {}

        def collection(body: Any) -> tuple[SObject | None, list[dict[str, Any]], Answer | None]:
            records = (body or {}).get("records") or []
            self.collection_sizes.append(len(records))
            if len(records) > 200:
                return None, [], (400, error("EXCEEDED_ID_LIMIT", "record limit reached. "
                                             "cannot submit more than 200 records into this "
                                             "call"), {})
            if (body or {}).get("allOrNone"):
                api.violations.append("allOrNone true: the fake models allOrNone false only")
            types = {r.get("attributes", {}).get("type") for r in records}
            if len(types) != 1 or next(iter(types)) not in self.objects:
                return None, [], (400, error("INVALID_TYPE", f"sObject types {types}"), {})
            return self.objects[str(next(iter(types)))], records, None

        @api.route("POST", base + "/composite/sobjects")
        @data
        def create(request: Request) -> Answer:
            with api.lock:
                obj, records, refused = collection(request.get_json(silent=True))
                if refused is not None or obj is None:
                    return refused or (400, error("INVALID_TYPE", "no type"), {})
                out = []
                for record in records:
                    values = self._values(obj, record, ())
                    problems = values if isinstance(values, list) else self._check(
                        obj, values, creating=True)
                    if problems:
                        out.append({"id": None, "success": False, "errors": problems})
                    else:
                        assert isinstance(values, dict)
                        out.append({"id": self._insert(obj, values), "success": True,
                                    "errors": []})
                return 200, out, {}

        @api.route("PATCH", base + "/composite/sobjects")
        @data
        def update(request: Request) -> Answer:
            with api.lock:
                obj, records, refused = collection(request.get_json(silent=True))
                if refused is not None or obj is None:
                    return refused or (400, error("INVALID_TYPE", "no type"), {})
                out = []
                for record in records:
                    values = self._values(obj, record, ("id",))
                    if isinstance(values, list):
                        out.append({"id": record.get("id"), "success": False,
                                    "errors": values})
                    else:
                        out.append(self.update_one(obj, str(record.get("id")), values))
                return 200, out, {}

        @api.route("PATCH", base + "/composite/sobjects/<name>/<external>")
        @data
        def upsert(request: Request, name: str, external: str) -> Answer:
            with api.lock:
                obj, records, refused = collection(request.get_json(silent=True))
                if refused is not None or obj is None:
                    return refused or (400, error("INVALID_TYPE", "no type"), {})
                if obj.name != name:
                    return 400, error("INVALID_TYPE", "records of another type"), {}
                meta = obj.fields.get(external)
                if meta is None or not meta.get("externalId"):
                    return 400, error("INVALID_FIELD", f"Field {external} is not an External "
                                                       "ID field or indexed field"), {}
                out = []
                for record in records:
                    values = self._values(obj, record, ())
                    if isinstance(values, list):
                        out.append({"id": None, "success": False, "errors": values})
                    else:
                        out.append(self.upsert_one(obj, external, values))
                return 200, out, {}

        @api.route("DELETE", base + "/composite/sobjects")
        @data
        def delete(request: Request) -> Answer:
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            self.collection_sizes.append(len(ids))
            if len(ids) > 200:
                return 400, error("EXCEEDED_ID_LIMIT", "more than 200 ids"), {}
            with api.lock:
                return 200, [self.delete_one(i) for i in ids], {}

        @api.route("POST", base + "/jobs/ingest")
        @data
        def create_job(request: Request) -> Answer:
            spec = request.get_json(silent=True) or {}
            with api.lock:
                obj = self.objects.get(spec.get("object", ""))
                if obj is None:
                    return 400, error("INVALIDENTITY", f"sObject type "
                                                       f"'{spec.get('object')}' is not "
                                                       "supported"), {}
                external = spec.get("externalIdFieldName")
                if spec.get("operation") == "upsert" and not (
                        external in obj.fields and obj.fields[external].get("externalId")):
                    return 400, error("INVALIDJOB", "externalIdFieldName must name an "
                                                    "External ID field"), {}
                if spec.get("lineEnding", "LF") != "LF" or spec.get("columnDelimiter",
                                                                    "COMMA") != "COMMA":
                    api.violations.append("the fake models LF lines and COMMA delimiters only")
                job = self._new_job(obj, spec["operation"], external)
                info = self._job_info(job)
                info["contentUrl"] = (f"services/data/v{VERSION}/jobs/ingest/{job['id']}"
                                      "/batches")
                return 200, info, {}

        @api.route("GET", base + "/jobs/ingest")
        @data
        def all_jobs(request: Request) -> Answer:
            with api.lock:
                return 200, {"done": True, "records": [self._job_info(j) for j in
                                                       self.jobs.values()],
                             "nextRecordsUrl": None}, {}

        @api.route("PUT", base + "/jobs/ingest/<job_id>/batches")
        @data
        def upload(request: Request, job_id: str) -> Answer:
            with api.lock:
                job = self.jobs.get(job_id)
                if job is None:
                    return 404, error("NOT_FOUND", "no such job"), {}
                if job["state"] != "Open":
                    return 409, error("INVALIDJOBSTATE", f"job is {job['state']}"), {}
                job["data"] += request.get_data(as_text=True)
                return 201, None, {}

        @api.route("PATCH", base + "/jobs/ingest/<job_id>")
        @data
        def close(request: Request, job_id: str) -> Answer:
            wanted = (request.get_json(silent=True) or {}).get("state")
            with api.lock:
                job = self.jobs.get(job_id)
                if job is None:
                    return 404, error("NOT_FOUND", "no such job"), {}
                if job["state"] != "Open":
                    return 409, error("INVALIDJOBSTATE", f"job is {job['state']}"), {}
                job["state"] = wanted
                if wanted == "UploadComplete":
                    self._start(job_id)
                return 200, self._job_info(job), {}

        @api.route("GET", base + "/jobs/ingest/<job_id>")
        @data
        def job_info(request: Request, job_id: str) -> Answer:
            with api.lock:
                job = self.jobs.get(job_id)
                if job is None:
                    return 404, error("NOT_FOUND", "no such job"), {}
                return 200, self._job_info(job), {}

        def results(kind: str) -> Callable[..., Answer]:
            def answer(request: Request, job_id: str) -> Answer:
                with api.lock:
                    job = self.jobs.get(job_id)
                    if job is None:
                        return 404, error("NOT_FOUND", "no such job"), {}
                    if job["state"] not in ("JobComplete", "Failed", "Aborted"):
                        return 400, error("INVALIDJOBSTATE", "job not complete"), {}
                    return 200, self._results_csv(job, kind), {"Content-Type": "text/csv"}
            return answer

        for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
            api.route("GET", base + f"/jobs/ingest/<job_id>/{kind}/")(data(results(kind)))

        def limited() -> tuple[int, Any, dict[str, str]]:
            wait = self.api._retry_after
            return 429, error("REQUEST_LIMIT_EXCEEDED", "rate limited: too many requests"), (
                {} if wait is None else {"Retry-After": f"{wait:g}"})

        api.limited_answer = limited  # type: ignore[method-assign]

