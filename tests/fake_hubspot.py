"""A stateful fake of HubSpot's CRM v3 API on 127.0.0.1, for the HubSpot connector's tests,
every request and answer checked against tests/apis/hubspot.openapi.json (the project's own
fragment, written from HubSpot's public reference).

What it models, as HubSpot documents it:
- object types (contacts, companies, deals, custom ones) with properties (`GET
  /crm/v3/properties/{objectType}`): types, unique values, read-only values; a property may
  carry a validation rule (a minimum for a number), as HubSpot's property validation does;
- records whose property values are strings, stamped `createdate` / `lastmodifieddate`
  (`hs_lastmodifieddate` for other types than contacts) by the server, one stamp a batch;
- search with filter groups, one sort, `after` paging of at most 200 a page, and the
  10,000-result cap: a page reaching past it is refused with 400, as HubSpot refuses it;
- batch read / create / update / upsert (by a unique `idProperty`) / archive of at most 100
  inputs, with 207 Multi-Status answers naming each failed input (`objectWriteTraceId`, or the
  ids not found);
- a private app token (`Authorization: Bearer`), the rate-limit headers of every answer
  (the daily allowance among them), and 429s with Retry-After on demand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request

from fake_api import FakeApi, OpenApiDescription

SPEC = Path(__file__).with_name("apis") / "hubspot.openapi.json"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
SEARCH_CAP = 10_000
DAILY_LIMIT = 250_000

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Prop:
    name: str
    type: str = "string"  # string, number, date, datetime, bool, enumeration
    field_type: str = "text"
    unique: bool = False
    read_only: bool = False
    minimum: float | None = None  # a validation rule: smaller numbers are refused


def _modified(object_type: str) -> str:
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _created(object_type: str) -> str:
    return "createdate" if object_type in ("contacts", "companies", "deals") else "hs_createdate"


_OWN = {
    "contacts": [Prop("email", unique=True), Prop("firstname"), Prop("lastname")],
    "companies": [Prop("name"), Prop("domain")],
    "deals": [Prop("dealname"), Prop("amount", "number", "number")],
}


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _ms(text: str) -> int | None:
    """A datetime value or filter value as epoch milliseconds (HubSpot takes both forms)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


@dataclass
class Stored:
    id: str
    properties: dict[str, str | None]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None


@dataclass
class ObjectType:
    name: str
    props: dict[str, Prop]
    records: dict[str, Stored] = field(default_factory=dict)
    #: unique property -> folded value -> id of the live record holding it
    index: dict[str, dict[str, str]] = field(default_factory=dict)

    def unindex(self, stored: Stored) -> None:
        for name, held in self.index.items():
            value = stored.properties.get(name)
            if value is not None and held.get(_fold(name, value)) == stored.id:
                del held[_fold(name, value)]


def _fold(name: str, value: str) -> str:
    """A unique value as HubSpot compares it (emails regardless of case)."""
    return value.lower() if name == "email" else value


class FakeHubSpot:
    """HubSpot's CRM v3 objects, properties, search and batch endpoints, in memory."""

    def __init__(self, token: str = TOKEN, search_cap: int = SEARCH_CAP) -> None:
        self.token = token
        self.search_cap = search_cap
        self.api = FakeApi(OpenApiDescription(SPEC), "hubspot")
        self.api.limited_answer = self._limited  # type: ignore[method-assign]
        self.types: dict[str, ObjectType] = {}
        self.lock = threading.RLock()
        self._next_id = 1000
        self._last_ms = 0
        self._correlation = 0
        self.write_faults: list[float | None] = []
        self.day_calls = 0
        for name in ("contacts", "companies", "deals"):
            self.define(name, [])
        self._routes()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeHubSpot:
        self.api.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.api.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.api.url

    # -- the test's side: schema, seeds, what is stored ---------------------------------------
    def define(self, object_type: str, props: Sequence[Prop]) -> None:
        """(Re)define an object type with no records: HubSpot's own properties (id, created,
        modified, and the type's defaults) and `props`."""
        own = [Prop("hs_object_id", "number", "number", unique=True, read_only=True),
               Prop(_created(object_type), "datetime", "date", read_only=True),
               Prop(_modified(object_type), "datetime", "date", read_only=True),
               *_OWN.get(object_type, [])]
        with self.lock:
            kind = ObjectType(object_type, {p.name: p for p in [*own, *props]})
            kind.index = {p.name: {} for p in kind.props.values()
                          if p.unique and p.name != "hs_object_id"}
            self.types[object_type] = kind

    def seed(self, object_type: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Records created as the API would create them (values as text); their ids."""
        with self.lock:
            kind = self.types[object_type]
            now = self._now()
            ids = []
            for row in rows:
                values = {k: _text(v) for k, v in row.items() if k in kind.props}
                ids.append(self._insert(kind, values, now).id)
            return ids

    def change(self, object_type: str, record_id: str, values: Mapping[str, Any]) -> None:
        """A user's edit in HubSpot: new values, a new modification stamp."""
        with self.lock:
            kind = self.types[object_type]
            self._apply(kind, kind.records[record_id], {k: _text(v) for k, v in values.items()},
                        self._now())

    def archive(self, object_type: str, record_id: str) -> None:
        """A user's delete in HubSpot: the record archived (search no longer finds it)."""
        with self.lock:
            kind = self.types[object_type]
            kind.unindex(kind.records[record_id])
            kind.records[record_id].archived = True
            kind.records[record_id].archived_ms = self._now()

    def purge(self, object_type: str, record_id: str) -> None:
        """A permanent delete (after 90 days in the recycle bin, or a GDPR delete): the
        record is gone, archived list included."""
        with self.lock:
            kind = self.types[object_type]
            kind.unindex(kind.records[record_id])
            del kind.records[record_id]

    def live(self, object_type: str) -> list[Stored]:
        """The records not archived, by id."""
        with self.lock:
            return [r for r in self.types[object_type].records.values() if not r.archived]

    def write_calls(self, answered: bool = True) -> list[int]:
        """Inputs of each batch write call (create, update, upsert, archive): those answered
        (`answered`), or every one sent, 429s included."""
        return [len(c.body["inputs"]) for c in self.api.calls
                if c.method == "POST" and "/batch/" in c.path
                and c.path.rsplit("/", 1)[-1] in ("create", "update", "upsert", "archive")
                and (not answered or c.status in (200, 201, 204, 207))]

    @contextmanager
    def failing_writes(self, count: int, retry_after: float | None) -> Iterator[None]:
        """The next `count` batch writes are answered 429 (with this Retry-After)."""
        with self.lock:
            self.write_faults = [retry_after] * count
        try:
            yield
        finally:
            with self.lock:
                self.write_faults = []

    # -- internals -------------------------------------------------------------------------
    def _now(self) -> int:
        self._last_ms = max(self._last_ms, round(time.time() * 1000))
        return self._last_ms

    def _insert(self, kind: ObjectType, values: dict[str, str | None], now: int) -> Stored:
        self._next_id += 1
        record_id = str(self._next_id)
        stored = Stored(record_id, {}, now, now)
        stored.properties.update({"hs_object_id": record_id, _created(kind.name): _iso(now)})
        self._apply(kind, stored, values, now)
        kind.records[record_id] = stored
        return stored

    def _apply(self, kind: ObjectType, stored: Stored, values: Mapping[str, str | None],
               now: int) -> None:
        kind.unindex(stored)
        for name, value in values.items():
            prop = kind.props[name]
            stored.properties[name] = _normal(prop, value)
        for name, held in kind.index.items():
            value = stored.properties.get(name)
            if value is not None and not stored.archived:
                held[_fold(name, value)] = stored.id
        stored.updated_ms = now
        stored.properties[_modified(kind.name)] = _iso(now)

    def _error(self, status: int, category: str, message: str, **extra: Any) -> Answer:
        self._correlation += 1
        body = {"status": "error", "message": message, "category": category,
                "correlationId": f"00000000-0000-4000-8000-{self._correlation:012d}", **extra}
        return status, body, self._headers()

    def _headers(self) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, DAILY_LIMIT - self.day_calls)),
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "99"}

    def _limited(self) -> tuple[int, Any, dict[str, str]]:
        """HubSpot's answer over its ten-second limit."""
        retry_after = self.api._retry_after
        self._correlation += 1
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return 429, {"status": "error", "message": "You have reached your ten_secondly_rolling "
                     "limit.", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING",
                     "correlationId": f"00000000-0000-4000-9000-{self._correlation:012d}"}, headers

    def _authorized(self, request: Request, object_type: str) -> Answer | None:
        """None when the token is right and the type exists; else HubSpot's error."""
        self.day_calls += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "INVALID_AUTHENTICATION", "Authentication credentials not "
                               "found. This API supports OAuth 2.0 authentication.")
        if object_type not in self.types:
            return self._error(404, "OBJECT_NOT_FOUND",
                               f"Unable to infer object type from: {object_type}")
        return None

    def _public(self, kind: ObjectType, stored: Stored, wanted: Sequence[str]) -> dict[str, Any]:
        names = dict.fromkeys(["hs_object_id", _created(kind.name), _modified(kind.name),
                               *[w for w in wanted if w in kind.props]])
        return {"id": stored.id,
                "properties": {n: stored.properties.get(n) for n in names},
                "createdAt": _iso(stored.created_ms), "updatedAt": _iso(stored.updated_ms),
                "archived": stored.archived,
                **({"archivedAt": _iso(stored.archived_ms)} if stored.archived_ms else {})}

    def _stamps(self) -> dict[str, str]:
        now = _iso(round(time.time() * 1000))
        return {"startedAt": now, "completedAt": now}

    def _batch_answer(self, ok: int, results: list[dict[str, Any]],
                      errors: list[dict[str, Any]]) -> Answer:
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, **self._stamps()}
        if errors:
            body.update(numErrors=len(errors), errors=errors)
            return 207, body, self._headers()
        return ok, body, self._headers()

    def _refusals(self, kind: ObjectType, values: Mapping[str, str]) -> Answer | None:
        """A whole batch refused: a property the type lacks, a read-only value."""
        for name in values:
            prop = kind.props.get(name)
            if prop is None:
                return self._error(400, "VALIDATION_ERROR", f'Property values were not valid: '
                                   f'[{{"isValid":false,"message":"Property \\"{name}\\" does '
                                   f'not exist","error":"PROPERTY_DOESNT_EXIST","name":'
                                   f'"{name}"}}]')
            if prop.read_only:
                return self._error(400, "VALIDATION_ERROR", f'Property values were not valid: '
                                   f'[{{"isValid":false,"message":"\\"{name}\\" is a read only '
                                   f'property; its value cannot be set.","error":'
                                   f'"READ_ONLY_VALUE","name":"{name}"}}]')
        return None

    def _invalid(self, kind: ObjectType, values: Mapping[str, str], trace: str | None
                 ) -> dict[str, Any] | None:
        """A per-input error (207) for values a property refuses, else None."""
        for name, value in values.items():
            prop = kind.props[name]
            problem = _problem(prop, value)
            if problem is None:
                continue
            code, text = problem
            detail = json.dumps([{"isValid": False, "message": text, "error": code,
                                  "name": name}], separators=(",", ":"))
            return {"status": "error", "category": "VALIDATION_ERROR",
                    "message": f"Property values were not valid: {detail}",
                    "errors": [{"message": text, "code": code,
                                "context": {"propertyName": [name]}}],
                    "context": {"objectWriteTraceId": [trace]} if trace is not None else {},
                    "links": {}}
        return None

    def _find(self, kind: ObjectType, id_property: str | None, value: str) -> Stored | None:
        if not id_property or id_property == "hs_object_id":
            found = kind.records.get(value)
            return found if found is not None and not found.archived else None
        if id_property in kind.index:
            found_id = kind.index[id_property].get(_fold(id_property, value))
            return kind.records[found_id] if found_id is not None else None
        folded = _fold(id_property, value)
        for stored in kind.records.values():
            held = stored.properties.get(id_property)
            if held is not None and not stored.archived and _fold(id_property, held) == folded:
                return stored
        return None

    def _write_fault(self) -> Answer | None:
        if not self.write_faults:
            return None
        retry_after = self.write_faults.pop(0)
        status, body, headers = self._limited()
        return status, body, headers if retry_after is None else {
            "Retry-After": f"{retry_after:g}"}

    # -- routes ----------------------------------------------------------------------------
    def _routes(self) -> None:
        api = self.api

        @api.route("GET", "/crm/v3/properties/<object_type>")
        def properties(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type)
                if refused:
                    return refused
                out = []
                for i, prop in enumerate(self.types[object_type].props.values()):
                    out.append({
                        "name": prop.name, "label": prop.name.replace("_", " ").title(),
                        "type": prop.type, "fieldType": prop.field_type, "description": "",
                        "groupName": "contactinformation", "options": [],
                        "displayOrder": i, "hasUniqueValue": prop.unique,
                        "calculated": False, "externalOptions": False, "hidden": False,
                        "formField": not prop.read_only,
                        "modificationMetadata": {"archivable": not prop.read_only,
                                                 "readOnlyDefinition": prop.read_only,
                                                 "readOnlyValue": prop.read_only}})
                return 200, {"results": out}, self._headers()

        @api.route("GET", "/crm/v3/objects/<object_type>")
        def list_page(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type)
                if refused:
                    return refused
                kind = self.types[object_type]
                archived = request.args.get("archived", "false") == "true"
                limit = int(request.args.get("limit", "10"))
                wanted = [p for p in request.args.get("properties", "").split(",") if p]
                ordered = sorted((r for r in kind.records.values() if r.archived == archived),
                                 key=lambda r: int(r.id))
                after = request.args.get("after")
                if after is not None:
                    ordered = [r for r in ordered if int(r.id) > int(after)]
                page = ordered[:limit]
                body: dict[str, Any] = {"results": [self._public(kind, r, wanted)
                                                    for r in page]}
                if len(ordered) > limit:
                    body["paging"] = {"next": {"after": page[-1].id}}
                return 200, body, self._headers()

        @api.route("POST", "/crm/v3/objects/<object_type>/search")
        def search(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type)
                if refused:
                    return refused
                return self._search(self.types[object_type], request.get_json())

        @api.route("POST", "/crm/v3/objects/<object_type>/batch/read")
        def batch_read(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type)
                if refused:
                    return refused
                kind = self.types[object_type]
                body = request.get_json()
                id_property = body.get("idProperty")
                if id_property and not kind.props.get(id_property, Prop("")).unique:
                    return self._error(400, "VALIDATION_ERROR", f"{id_property} is not a "
                                       "unique property")
                results, missing = [], []
                for item in body["inputs"]:
                    found = self._find(kind, id_property, item["id"])
                    if found is None:
                        missing.append(item["id"])
                    else:
                        results.append(self._public(kind, found, body["properties"]))
                errors = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": f"Could not get some {object_type.upper()} objects, they "
                                      "may be deleted or not exist. Check that ids are valid.",
                           "context": {"ids": missing}, "errors": [], "links": {}}
                          ] if missing else []
                return self._batch_answer(200, results, errors)

        @api.route("POST", "/crm/v3/objects/<object_type>/batch/create")
        def batch_create(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type) or self._write_fault()
                if refused:
                    return refused
                kind = self.types[object_type]
                inputs = request.get_json()["inputs"]
                for item in inputs:
                    whole = self._refusals(kind, item["properties"])
                    if whole:
                        return whole
                now = self._now()
                results, errors = [], []
                for item in inputs:
                    trace = item.get("objectWriteTraceId")
                    problem = self._invalid(kind, item["properties"], trace) or \
                        self._conflict(kind, item["properties"], trace)
                    if problem:
                        errors.append(problem)
                        continue
                    stored = self._insert(kind, dict(item["properties"]), now)
                    results.append({**self._public(kind, stored, list(item["properties"])),
                                    **({"objectWriteTraceId": trace} if trace else {})})
                return self._batch_answer(201, results, errors)

        @api.route("POST", "/crm/v3/objects/<object_type>/batch/update")
        def batch_update(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type) or self._write_fault()
                if refused:
                    return refused
                kind = self.types[object_type]
                inputs = request.get_json()["inputs"]
                for item in inputs:
                    whole = self._refusals(kind, item["properties"])
                    if whole:
                        return whole
                now = self._now()
                results, errors, missing = [], [], []
                for item in inputs:
                    trace = item.get("objectWriteTraceId")
                    found = self._find(kind, item.get("idProperty"), item["id"])
                    if found is None:
                        missing.append(item["id"])
                        continue
                    problem = self._invalid(kind, item["properties"], trace)
                    if problem:
                        errors.append(problem)
                        continue
                    self._apply(kind, found, item["properties"], now)
                    results.append({**self._public(kind, found, list(item["properties"])),
                                    **({"objectWriteTraceId": trace} if trace else {})})
                if missing:
                    errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                                   "message": f"Could not get some {object_type.upper()} "
                                              "objects, they may be deleted or not exist. "
                                              "Check that ids are valid.",
                                   "context": {"ids": missing}, "errors": [], "links": {}})
                return self._batch_answer(200, results, errors)

        @api.route("POST", "/crm/v3/objects/<object_type>/batch/upsert")
        def batch_upsert(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type) or self._write_fault()
                if refused:
                    return refused
                kind = self.types[object_type]
                inputs = request.get_json()["inputs"]
                for item in inputs:
                    prop = kind.props.get(item["idProperty"])
                    if prop is None or not prop.unique or prop.read_only:
                        return self._error(400, "VALIDATION_ERROR",
                                           f"idProperty {item['idProperty']} is not a unique "
                                           "property that can be set")
                    whole = self._refusals(kind, item["properties"])
                    if whole:
                        return whole
                now = self._now()
                results, errors = [], []
                for item in inputs:
                    trace = item.get("objectWriteTraceId")
                    values = {**item["properties"], item["idProperty"]: item["id"]}
                    problem = self._invalid(kind, values, trace)
                    if problem:
                        errors.append(problem)
                        continue
                    found = self._find(kind, item["idProperty"], item["id"])
                    if found is None:
                        found = self._insert(kind, values, now)
                        new = True
                    else:
                        self._apply(kind, found, item["properties"], now)
                        new = False
                    results.append({**self._public(kind, found, list(values)), "new": new,
                                    **({"objectWriteTraceId": trace} if trace else {})})
                return self._batch_answer(200, results, errors)

        @api.route("POST", "/crm/v3/objects/<object_type>/batch/archive")
        def batch_archive(request: Request, object_type: str) -> Answer:
            with self.lock:
                refused = self._authorized(request, object_type) or self._write_fault()
                if refused:
                    return refused
                kind = self.types[object_type]
                for item in request.get_json()["inputs"]:
                    found = kind.records.get(item["id"])
                    if found is not None and not found.archived:
                        kind.unindex(found)
                        found.archived, found.archived_ms = True, self._now()
                return 204, None, self._headers()

    def _conflict(self, kind: ObjectType, values: Mapping[str, str], trace: str | None
                  ) -> dict[str, Any] | None:
        """A create whose unique value another record holds (HubSpot: "already exists")."""
        for name, value in values.items():
            if kind.props[name].unique and value and self._find(kind, name, value):
                existing = self._find(kind, name, value)
                assert existing is not None
                return {"status": "error", "category": "CONFLICT",
                        "message": f"{kind.name[:-1].title()} already exists. Existing ID: "
                                   f"{existing.id}",
                        "errors": [], "links": {},
                        "context": {"objectWriteTraceId": [trace]} if trace else {}}
        return None

    def _search(self, kind: ObjectType, body: Mapping[str, Any]) -> Answer:
        limit = int(body.get("limit", 10))
        offset = int(body.get("after") or 0)
        if offset + limit > self.search_cap:
            return self._error(400, "VALIDATION_ERROR", f"The search endpoints are limited to "
                               f"{self.search_cap} total results for any given query; after "
                               f"{offset} with limit {limit} pages past it.")
        groups = body.get("filterGroups") or []
        for group in groups:
            for cond in group["filters"]:
                if cond["propertyName"] not in kind.props:
                    return self._error(400, "VALIDATION_ERROR", f"There was a problem with "
                                       f"the request: property {cond['propertyName']} does "
                                       "not exist")
        matched = [r for r in kind.records.values() if not r.archived and (
            not groups or any(all(_matches(kind.props[c["propertyName"]], r, c)
                                  for c in g["filters"]) for g in groups))]
        sorts = body.get("sorts") or [{"propertyName": "hs_object_id"}]
        sort = sorts[0]
        prop = kind.props.get(sort["propertyName"])
        if prop is None:
            return self._error(400, "VALIDATION_ERROR",
                               f"cannot sort by unknown property {sort['propertyName']}")
        descending = sort.get("direction") == "DESCENDING"
        present = [r for r in matched if r.properties.get(prop.name) is not None]
        absent = [r for r in matched if r.properties.get(prop.name) is None]
        # ties in the sorted property: by id (HubSpot documents no tie order)
        present.sort(key=lambda r: (_typed(prop, r.properties[prop.name]), int(r.id)),
                     reverse=descending)
        ordered = present + absent
        page = ordered[offset:offset + limit]
        out: dict[str, Any] = {"total": len(ordered),
                               "results": [self._public(kind, r, body.get("properties") or [])
                                           for r in page]}
        if offset + limit < len(ordered):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, out, self._headers()


def _text(value: Any) -> str | None:
    """A value as HubSpot holds it: text (instants in ISO-8601 UTC with milliseconds)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return _iso(round(value.timestamp() * 1000))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _normal(prop: Prop, value: str | None) -> str | None:
    """What HubSpot stores of a written value: "" clears it; instants as ISO text."""
    if value is None or value == "":
        return None
    if prop.type == "datetime":
        ms = _ms(value)
        return _iso(ms) if ms is not None else value
    if prop.type == "number":
        number = float(value)
        return str(int(number)) if number.is_integer() and "e" not in value.lower() else value
    return value


def _problem(prop: Prop, value: str | None) -> tuple[str, str] | None:
    """(error code, message) when a property refuses a value."""
    if value is None or value == "":
        return None
    if prop.type == "number":
        try:
            number = float(value)
        except ValueError:
            return "INVALID_INTEGER", f"{value} was not a valid number."
        if prop.minimum is not None and number < prop.minimum:
            return ("OUT_OF_RANGE", f"{value} is below the minimum value "
                    f"{prop.minimum:g} of property {prop.name}.")
    if prop.type == "datetime" and _ms(value) is None:
        return "INVALID_DATETIME", f"{value} was not a valid long or ISO-8601 datetime."
    if prop.type == "bool" and value not in ("true", "false"):
        return "INVALID_BOOLEAN", f"{value} was not a valid boolean."
    return None


def _typed(prop: Prop, value: str) -> Any:
    if prop.type == "number":
        return float(value)
    if prop.type == "datetime":
        return _ms(value) or 0
    return value


def _matches(prop: Prop, stored: Stored, cond: Mapping[str, Any]) -> bool:
    op = cond["operator"]
    held = stored.properties.get(prop.name)
    if op == "HAS_PROPERTY":
        return held is not None
    if op == "NOT_HAS_PROPERTY":
        return held is None
    if held is None:
        return op in ("NEQ", "NOT_IN")
    mine = _typed(prop, held)

    def given(text: str) -> Any:
        return _typed(prop, text)

    if op == "IN":
        return mine in [given(v) for v in cond["values"]]
    if op == "NOT_IN":
        return mine not in [given(v) for v in cond["values"]]
    if op == "BETWEEN":
        return bool(given(cond["value"]) <= mine <= given(cond["highValue"]))
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = str(cond["value"]).strip("*").lower() in held.lower()
        return found if op == "CONTAINS_TOKEN" else not found
    other = given(cond["value"])
    return bool({"EQ": mine == other, "NEQ": mine != other, "LT": mine < other,
                 "LTE": mine <= other, "GT": mine > other, "GTE": mine >= other}[op])
