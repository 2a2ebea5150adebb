"""A stateful fake of the example JSON API (tests/apis/example_http.openapi.json, the
project's own API for the generic HTTP connector), served on 127.0.0.1, every request and
answer checked against that description.

State: record sets, each with its fields (name -> portable kind), one key field and records
by key; values are checked against the kinds (a text for a datetime must be ISO 8601), and a
set may refuse negative values of one field (422 VALIDATION_FAILED, per record in a batch).
Lists are in key order on four paths, one per pagination style; `/oauth/token` grants
client-credentials tokens, which `expire_tokens()` makes answer 401 until fetched again.
`writes` counts each record written by key (a record written twice counts 2).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request

from fake_api import FakeApi, OpenApiDescription

SPEC = Path(__file__).parent / "apis" / "example_http.openapi.json"
BATCH_LIMIT = 100


@dataclass
class RecordSet:
    fields: dict[str, str]
    key: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse_negative: str | None = None


def plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _kind_problem(kind: str, value: Any) -> str | None:
    if value is None:
        return None
    ok = {"text": isinstance(value, str),
          "integer": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, int | float) and not isinstance(value, bool),
          "boolean": isinstance(value, bool)}.get(kind)
    if kind in ("datetime", "date"):
        try:
            ok = isinstance(value, str) and bool(datetime.fromisoformat(value))
        except ValueError:
            ok = False
    return None if ok in (True, None) else f"is no {kind}: {value!r}"


class FakeHttp(FakeApi):
    def __init__(self, *, client_id: str = "app", client_secret: str = "",
                 tokens: Sequence[str] = (), api_key: str = "",
                 basic: tuple[str, str] | None = None) -> None:
        super().__init__(OpenApiDescription(SPEC), "example")
        self.sets: dict[str, RecordSet] = {}
        self.client_id, self.client_secret = client_id, client_secret
        self.static_tokens = set(tokens)
        self.issued: set[str] = set()
        self.api_key = api_key
        self.basic = basic
        self.writes: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self._serial = itertools.count(1)
        self.route("POST", "/oauth/token")(self._token)
        for style in ("cursor", "offset", "page", "link"):
            self.route("GET", f"/v1/{style}/<name>")(
                lambda request, name, _style=style: self._list(request, name, _style))
        self.route("POST", "/v1/records/<name>")(self._insert)
        self.route("POST", "/v1/records/<name>/batch")(self._batch)
        self.route("PUT", "/v1/records/<name>/<path:rid>")(self._put)
        self.route("PATCH", "/v1/records/<name>/<path:rid>")(self._patch)
        self.route("DELETE", "/v1/records/<name>/<path:rid>")(self._delete)

    # -- state ------------------------------------------------------------------------------
    def define(self, name: str, fields: Mapping[str, str], key: str,
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        with self.lock:
            record_set = RecordSet(dict(fields), key, refuse_negative=refuse_negative)
            for row in rows:
                record = {f: plain(row.get(f)) for f in fields}
                record_set.rows[str(record[key])] = record
            self.sets[name] = record_set

    def records(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            found = self.sets[name]
            return [dict(found.rows[k]) for k in sorted(found.rows)]

    def expire_tokens(self) -> None:
        with self.lock:
            self.issued.clear()

    # -- auth -------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[7:]
            return token in self.static_tokens or token in self.issued
        if header.startswith("Basic ") and self.basic is not None:
            pair = base64.b64decode(header[6:]).decode()
            return pair == f"{self.basic[0]}:{self.basic[1]}"
        return bool(self.api_key) and self.api_key in (request.headers.get("X-API-Key"),
                                                       request.args.get("api_key"))

    def _token(self, request: Request) -> tuple[int, Any]:
        form = parse_qs(request.get_data(as_text=True))
        given = {k: v[0] for k, v in form.items()}
        if (given.get("client_id"), given.get("client_secret")) != (self.client_id,
                                                                   self.client_secret):
            return 401, {"error": "invalid_client"}
        token = f"tok-{next(self._serial)}-{secrets.token_hex(8)}"
        with self.lock:
            self.issued.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def _guard(self, request: Request, name: str) -> tuple[int, Any] | RecordSet:
        if not self._authorized(request):
            return 401, {"code": "unauthorized", "message": "missing or expired credentials"}
        found = self.sets.get(name)
        if found is None:
            return 404, {"code": "NOT_FOUND", "message": f"no record set {name}"}
        return found

    # -- lists ------------------------------------------------------------------------------
    def _list(self, request: Request, name: str, style: str) -> tuple[int, Any, dict[str, str]]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return (*found, {})
        args = request.args
        with self.lock:
            rows = [dict(found.rows[k]) for k in sorted(found.rows)]
        if "updated_since" in args:
            since = datetime.fromisoformat(args["updated_since"])
            rows = [r for r in rows if r.get("updated_at") is not None
                    and datetime.fromisoformat(r["updated_at"]) >= since]
        if "ids" in args:
            wanted = set(args["ids"].split(","))
            rows = [r for r in rows if str(r[found.key]) in wanted]
        if style == "cursor":
            limit = int(args.get("limit", 50))
            if "cursor" in args:
                after = base64.urlsafe_b64decode(args["cursor"]).decode()
                rows = [r for r in rows if str(r[found.key]) > after]
            page, more = rows[:limit], len(rows) > limit
            cursor = (base64.urlsafe_b64encode(str(page[-1][found.key]).encode()).decode()
                      if more else None)
            return 200, {"data": {"items": page}, "next_cursor": cursor}, {}
        if style == "offset":
            limit, offset = int(args.get("limit", 50)), int(args.get("offset", 0))
            return 200, {"results": rows[offset : offset + limit], "total": len(rows)}, {}
        per_page, number = int(args.get("per_page", 50)), int(args.get("page", 1))
        page = rows[(number - 1) * per_page : number * per_page]
        pages = max(1, -(-len(rows) // per_page))
        if style == "page":
            return 200, {"records": page, "page": number, "pages": pages}, {}
        headers = {}
        if number < pages:
            headers["Link"] = (f'<{self.url}/v1/link/{name}?per_page={per_page}&page='
                               f'{number + 1}>; rel="next"')
        return 200, page, headers

    # -- writes -----------------------------------------------------------------------------
    def _problem(self, found: RecordSet, record: Any) -> tuple[str, str] | None:
        if not isinstance(record, dict):
            return "INVALID", "a record is a JSON object"
        for name, value in record.items():
            if name not in found.fields:
                return "UNKNOWN_FIELD", f"{name} is no field of this record set"
            problem = _kind_problem(found.fields[name], value)
            if problem:
                return "INVALID_VALUE", f"{name} {problem}"
        if record.get(found.key) in (None, ""):
            return "KEY_REQUIRED", f"{found.key} is required"
        f = found.refuse_negative
        if f and isinstance(record.get(f), int | float) and record[f] < 0:
            return "VALIDATION_FAILED", f"{f} must be at least 0"
        return None

    def _store(self, found: RecordSet, record: dict[str, Any], merge: bool) -> dict[str, Any]:
        rid = str(record[found.key])
        base = found.rows.get(rid) if merge else None
        stored = {f: record.get(f, (base or {}).get(f)) for f in found.fields}
        found.rows[rid] = stored
        self.writes[rid] += 1
        return stored

    def _body(self, request: Request) -> Any:
        try:
            return json.loads(request.get_data() or b"null")
        except ValueError:
            return None

    def _insert(self, request: Request, name: str) -> tuple[int, Any]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return found
        record = self._body(request)
        problem = self._problem(found, record)
        if problem:
            return 422, {"code": problem[0], "message": problem[1]}
        with self.lock:
            if str(record[found.key]) in found.rows:
                return 409, {"code": "DUPLICATE", "message": f"{found.key} "
                                                             f"{record[found.key]} exists"}
            return 201, self._store(found, record, merge=False)

    def _put(self, request: Request, name: str, rid: str) -> tuple[int, Any]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return found
        record = self._body(request)
        problem = self._problem(found, record)
        if problem is None and str(record.get(found.key)) != rid:
            problem = ("KEY_MISMATCH", f"the path names {rid}, the record another key")
        if problem:
            return 422, {"code": problem[0], "message": problem[1]}
        with self.lock:
            existed = rid in found.rows
            return (200 if existed else 201), self._store(found, record, merge=False)

    def _patch(self, request: Request, name: str, rid: str) -> tuple[int, Any]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return found
        record = self._body(request)
        with self.lock:
            if rid not in found.rows:
                return 404, {"code": "NOT_FOUND", "message": f"no record {rid}"}
            merged = {**found.rows[rid], **(record if isinstance(record, dict) else {})}
            problem = self._problem(found, merged if isinstance(record, dict) else record)
            if problem:
                return 422, {"code": problem[0], "message": problem[1]}
            return 200, self._store(found, merged, merge=True)

    def _delete(self, request: Request, name: str, rid: str) -> tuple[int, Any]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return found
        with self.lock:
            if found.rows.pop(rid, None) is None:
                return 404, {"code": "NOT_FOUND", "message": f"no record {rid}"}
        return 204, None

    def _batch(self, request: Request, name: str) -> tuple[int, Any]:
        found = self._guard(request, name)
        if not isinstance(found, RecordSet):
            return found
        body = self._body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not 1 <= len(records) <= BATCH_LIMIT:
            return 400, {"code": "BAD_BATCH", "message": f"records: 1 to {BATCH_LIMIT} a call"}
        errors = []
        with self.lock:
            self.batch_sizes.append(len(records))
            for i, record in enumerate(records):
                problem = self._problem(found, record)
                if problem:
                    errors.append({"index": i, "code": problem[0], "message": problem[1]})
                    continue
                self._store(found, record, merge=True)
        return 200, {"upserted": len(records) - len(errors), "errors": errors}
