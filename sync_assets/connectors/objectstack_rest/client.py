"""A typed HTTP client for the ObjectStack REST data API (`/api/v1`), measured on 17.4.0.

Authentication is an API key (`osk_...`), sent as `X-API-Key`. Every method is one or more HTTP
calls; `ObjectStackClient.calls` counts them (retries included).

Limits (enforced by splitting, never by sending a request the server must refuse):
- `batch`, `create_many`, `delete_many`: at most `BATCH_LIMIT` (200) records a call (the server
  answers 400 BATCH_TOO_LARGE above it). Longer inputs are split into consecutive calls and
  the per-row results are joined back in input order. `batch(..., atomic=True)` with more than
  200 records raises ValueError (atomicity cannot span calls). With
  `continue_on_error=False`, the rows after a failed call are not sent; they come back
  failed with code NOT_ATTEMPTED, as the server reports its own unattempted rows.
- `import_rows`: at most `IMPORT_LIMIT` (5,000) rows a call (413 PAYLOAD_TOO_LARGE above it);
  split the same way.

Errors: `ObjectStackError` is the base; `TransientError` (429, 408, 425, 5xx except 501/505,
timeouts, connection errors; `retry_after` from a Retry-After header) is retried here with
exponential backoff (`backoff * 2**attempt`, capped at `max_backoff`, or the Retry-After value
when the server sent one, also capped) up to `max_retries` times, then raised. `AuthError`
(401/403) names the server URL; `NotFoundError` (404 OBJECT_NOT_FOUND / RECORD_NOT_FOUND /
RESOURCE_NOT_FOUND); `RequestRefused` (any other 4xx) carries the server's `code`, message and
whole body in `details`. No message ever contains the API key. A retried write whose first
attempt timed out may have been applied: use client-chosen ids or `import_rows` upserts where
that matters, or `retry_ambiguous=False`: then a write (any method but GET) is retried only
when the server certainly did not apply it (the connection was never made, or HTTP 408, 425,
429, 503), and any other transient failure is raised at once for the caller to resolve (the
connector looks the records up again before it writes them once more).

Facts measured against the real server (17.4.0, sqlite-wasm driver):
- Record shape: `{"id", "created_at", "updated_at", "organization_id", "created_by",
  "updated_by", "owner_id", "owning_business_unit_id", <declared fields>}`; unset fields come
  back as `null`. REST creates make 16-character ids (`[A-Za-z0-9_-]`), `/import` creates
  make UUIDs; client-chosen ids are kept (batch create, batch upsert, import upsert on `id`).
- Timestamps: ISO-8601 UTC with exactly 3 fractional digits (`2026-12-01T19:44:09.923Z`),
  stamped by the server at millisecond precision; rows written in the same ms share an
  `updated_at` (151 of the 200 rows of one createMany did; `/import` rows too; batch create
  writes row by row, about 2-5 ms apart), so `updated_at` alone is no key.
- Filters are parsed, not compared as text: `{"updated_at": {"$gt": t}}` accepts `...Z`, no
  fraction, `+01:00` offsets and epoch milliseconds alike and compares instants; `$gt` on `id`
  compares bytewise (ASCII: digits < upper case < `_` < lower case), matching the order of
  `sort=id`, so the keyset filter of `keyset_after` with `sort=updated_at,id` pages exactly.
  Operators: $eq $ne $gt $gte $lt $lte $in $nin $between $contains $notContains $startsWith
  $endsWith $icontains $like $ilike $null $exists (camelCase: `$startswith` is 400
  INVALID_FILTER), plus `$and`/`$or`, and the array form `[["f", ">", v]]`.
- A filter, sort or `fields` entry naming a field the object does not have is refused: 400
  INVALID_FIELD (filter, fields) or INVALID_SORT (sort), never an empty list. A filter that
  is not JSON: 400 INVALID_FILTER.
- Sort: `sort=a,b` ascending, a leading `-` descends a key (`-updated_at,id`).
- `fields=` returns exactly the fields named: `id` and `updated_at` are NOT added.
- No `limit` returns every record (1,212 of 1,212); `limit=0` returns none; the reply is
  `{"records", "total", "hasMore"}`, `total` only without `count=false` (this client sends
  `count=false`); with `count=false`, `hasMore` is true whenever the page is full, even at the
  end.
- `/import` (`writeMode` insert|update|upsert; update and upsert need `matchFields`, else 400
  INVALID_REQUEST) answers per row `{"row" (1-based), "ok", "action": created|updated|skipped|
  failed, "id", "code", "error", "field"}`: no record data. It stamps `updated_at` like any
  write. Update/upsert with no match: `skipped` with code NO_MATCH (ok: true) for update,
  `created` for upsert; a row without the match field is created. Two rows matching the same
  record both say `updated` with the same id. `matchFields` naming an unknown field is NOT
  refused: nothing matches, so upsert inserts. Import coerces like a CSV loader ("true"/"yes"
  -> true, "5.5" -> 5.5, "03/02/1990" -> "1990-03-02"); row errors use lower-case codes
  with a field (`invalid_option`, field `status`) or upper-case ones (INVALID_FIELD,
  UNIQUE_VIOLATION).
- `/batch` answers `{"success", "operation", "total", "succeeded", "failed", "results": [...]}`;
  a result is `{"index" (0-based), "success": true, "id", "data": <record>}` (delete: no
  `data`) or `{"index", "success": false, "id"?, "errors": [{"code", "message",
  "httpStatus"}]}`, e.g. VALIDATION_FAILED "Status must be one of: active, inactive, lead",
  UNIQUE_VIOLATION (409), INVALID_FIELD (unknown field), RECORD_NOT_FOUND (404 for
  update/delete of a missing id). The server's default is `continueOnError: false` (later rows
  fail NOT_ATTEMPTED); `atomic: true` rolls back the successful rows (code ROLLED_BACK). Batch
  update/upsert take `{"id", "data": {...}}`: a flat `{"id", field: ...}` record is accepted
  but its fields are ignored (upsert then creates an empty record) — this client always sends
  the `data` form. Batch upsert matches on `id` only.
- `createMany` is all-or-nothing per call: one invalid row refuses the call (400
  VALIDATION_FAILED with `fields`), nothing is written.
- `updated_at`, `created_at` (and `id` on PATCH) sent in a write are ignored and stamped by the
  server: no error. PATCH lists `created_at` in `droppedFields` / X-ObjectStack-Dropped-Fields,
  but not `updated_at`; batch and createMany report nothing.
- JSON values: `number` -> JSON number (12.5, 5; `precision` is not enforced, 5.123 is kept),
  `boolean` -> true/false, `date` -> "YYYY-MM-DD" (a datetime string is truncated to its date),
  `datetime` -> the ISO string above. Batch writes coerce "true" and "5" but refuse "abc" for a
  number (VALIDATION_FAILED "... must be a number").
- `/meta/object/{name}` -> `{"item": {"fields": {name: {"type", "label", "required",
  "readonly", "system"?, "unique", "options"?, "reference"?, "precision"?, ...}}}}`; types are
  text, email, select, number, date, datetime, boolean, lookup, ...; the system fields come
  first (organization_id, created_at, created_by, updated_at, updated_by, owner_id,
  owning_business_unit_id; `id` is not listed); 404 RESOURCE_NOT_FOUND for an unknown object.
- Auth failures: no or a wrong key -> 401 `{"error": "UNAUTHENTICATED", "code":
  "UNAUTHENTICATED", "message": ...}`.
- Single-record writes (`create`, `update`, `delete`): `If-Match: <updated_at>` (quoted or
  not) guards PATCH and DELETE: a record changed since answers 409 CONCURRENT_UPDATE (with
  `currentVersion`), a missing one 404 RECORD_NOT_FOUND. POST of an existing unique value:
  409 UNIQUE_VIOLATION. Batch `id`s must be strings (a number refuses the whole call: 400
  VALIDATION_FAILED `records.0.id` invalid_type).
- `/import` ignores `null` values (an upsert or update with `{"name": null}` keeps the stored
  name): it cannot clear a field; batch update with `{"id", "data": {"name": null}}` can.
- `count=true` adds `total` (the count of the whole filter, whatever `limit` is). `limit` is not
  capped (limit=20000 returned all 6,007 records). Nulls sort first ascending (`sort=name`),
  last descending. The text operators ($contains, $startsWith, $endsWith, $like) are
  case-sensitive, and `%`/`_` are literal in all but $like; $eq/$in on text are exact and
  case-sensitive; `$ne`, `$nin`, `$notContains` and `$not` (plain negation) match null; `$in`
  holding `null` is refused (400 INVALID_FILTER); `{"$eq": {"$field": ...}}` is accepted and
  matches nothing (a `$field` comparison is not supported); `{"f": {"$gte": "1"}}` on a number
  compares numerically.
- Validation rules (`validations: [{type: 'script', condition: ...}]`) refuse a batch row with
  VALIDATION_FAILED and the rule's message; the same row through `/import` fails with
  `rule_violation` (field `_record`).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal
from urllib.parse import quote

import httpx

BATCH_LIMIT = 200
IMPORT_LIMIT = 5000
API_PREFIX = "/api/v1"

BatchOperation = Literal["create", "update", "upsert", "delete"]
WriteMode = Literal["insert", "update", "upsert"]
Record = dict[str, Any]
Records = list[Record]
RowResults = list["RowResult"]
Filter = Mapping[str, Any] | Sequence[Any]

_NOT_TRANSIENT_5XX = frozenset({501, 505})
_TRANSIENT_4XX = frozenset({408, 425, 429})
#: statuses that say the request was not processed: a write answered so is safe to resend
_NOT_APPLIED = frozenset({408, 425, 429, 503})
#: transport failures that happen before a request reaches the server
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ObjectStackError(Exception):
    """Any failure of a call to ObjectStack. The message never contains the API key."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.url = url


class TransientError(ObjectStackError):
    """Worth retrying later: 429, 408, 425, most 5xx, timeouts, connection errors."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthError(ObjectStackError):
    """401/403: the server refused the credentials."""


class NotFoundError(ObjectStackError):
    """404: no such object, record or metadata item."""


class RequestRefused(ObjectStackError):
    """Any other 4xx: the server understood and refused the request (`code`, `details`)."""

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.details: dict[str, Any] = dict(details or {})


@dataclass(frozen=True)
class RowResult:
    """The outcome of one input row of `batch`, `delete_many` or `import_rows`.

    `index` is the row's 0-based position in the input; `action` is the batch operation
    (create/update/upsert/delete) on success, or the import's created/updated/skipped, or
    "failed"; `record` is the written record (batch create/update/upsert only).
    """

    index: int
    ok: bool
    id: str | None = None
    action: str | None = None
    record: Record | None = None
    code: str | None = None
    message: str | None = None
    field: str | None = None
    raw: Mapping[str, Any] = dataclass_field(default_factory=dict, repr=False, compare=False)


def keyset_after(updated_at: str, record_id: str) -> dict[str, Any]:
    """The filter for the records after (updated_at, id) in `sort=updated_at,id` order."""
    return {
        "$or": [
            {"updated_at": {"$gt": updated_at}},
            {"updated_at": updated_at, "id": {"$gt": record_id}},
        ]
    }


def _chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ObjectStackClient:
    """The REST data API of one ObjectStack server, authenticated by an API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        retry_ambiguous: bool = True,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        if not api_key:
            raise ValueError("an ObjectStack API key is required")
        self.base_url = base
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_ambiguous = retry_ambiguous
        self.calls = 0
        self._sleep = sleep
        self._api_key = api_key
        self._http = httpx.Client(
            base_url=base + API_PREFIX,
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ObjectStackClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ObjectStackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """GET /health: `{"status": "ok", "version", "timestamp", "uptime"}`."""
        return dict(self._request("GET", "/health").get("data", {}))

    def describe(self, object_name: str) -> dict[str, dict[str, Any]]:
        """The fields of an object by name (`type`, `required`, `readonly`, `options`, ...)."""
        body = self._request("GET", f"/meta/object/{quote(object_name, safe='')}")
        return dict(body["item"]["fields"])

    def get(self, object_name: str, record_id: str) -> Record:
        """One record by id; NotFoundError when there is none."""
        body = self._request("GET", f"{self._data(object_name)}/{quote(record_id, safe='')}")
        return dict(body["record"])

    def list(
        self,
        object_name: str,
        *,
        filter: Filter | None = None,
        fields: Sequence[str] | None = None,
        sort: str | Sequence[str] | None = None,
        limit: int | None = 1000,
        offset: int | None = None,
    ) -> Records:
        """GET /data/{object}: one page of records (`limit=None`: all of them)."""
        params: dict[str, Any] = {"count": "false"}
        if filter is not None:
            params["filter"] = json.dumps(filter, separators=(",", ":"))
        if fields is not None:
            params["fields"] = ",".join(fields)
        if sort is not None:
            params["sort"] = sort if isinstance(sort, str) else ",".join(sort)
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        body = self._request("GET", self._data(object_name), params=params)
        return [dict(r) for r in body["records"]]

    def list_with_total(
        self,
        object_name: str,
        *,
        filter: Filter | None = None,
        fields: Sequence[str] | None = None,
        sort: str | Sequence[str] | None = None,
        limit: int = 1,
    ) -> tuple[Records, int]:
        """GET /data/{object} with `count=true`: one page and the count of the whole filter."""
        params: dict[str, Any] = {"count": "true", "limit": limit}
        if filter is not None:
            params["filter"] = json.dumps(filter, separators=(",", ":"))
        if fields is not None:
            params["fields"] = ",".join(fields)
        if sort is not None:
            params["sort"] = sort if isinstance(sort, str) else ",".join(sort)
        body = self._request("GET", self._data(object_name), params=params)
        records = [dict(r) for r in body["records"]]
        total = body.get("total")
        return records, int(total) if isinstance(total, int) else len(records)

    def count(self, object_name: str, *, filter: Filter | None = None) -> int:
        """How many records match the filter (one call)."""
        return self.list_with_total(object_name, filter=filter, fields=["id"], limit=1)[1]

    def pages(
        self,
        object_name: str,
        *,
        page_size: int = 1000,
        fields: Sequence[str] | None = None,
        filter: Filter | None = None,
        after: tuple[str, str] | None = None,
    ) -> Iterator[Records]:
        """Every record in (updated_at, id) order, a page at a time, by keyset paging.

        `after` = (updated_at, id) of the last record already seen. `fields` always gets
        `id` and `updated_at` added (the server returns only the fields named).
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        wanted = None
        if fields is not None:
            wanted = [*fields, *(f for f in ("id", "updated_at") if f not in fields)]
        while True:
            where: Filter | None = filter
            if after is not None:
                keyset = keyset_after(*after)
                where = keyset if filter is None else {"$and": [filter, keyset]}
            page = self.list(
                object_name, filter=where, fields=wanted, sort="updated_at,id", limit=page_size
            )
            if page:
                yield page
            if len(page) < page_size:
                return
            after = (page[-1]["updated_at"], page[-1]["id"])

    # -- writes ---------------------------------------------------------------------------
    def create_many(self, object_name: str, records: Sequence[Mapping[str, Any]]) -> Records:
        """POST /data/{object}/createMany, 200 a call; returns the created records in order.

        Each call is all-or-nothing: one invalid record refuses its call (RequestRefused,
        e.g. VALIDATION_FAILED); the calls before it stay written.
        """
        created: Records = []
        for _, chunk in _chunks(records, BATCH_LIMIT):
            body = self._request(
                "POST", f"{self._data(object_name)}/createMany", body=[dict(r) for r in chunk]
            )
            created.extend(dict(r) for r in body["records"])
        return created

    def create(self, object_name: str, record: Mapping[str, Any]) -> Record:
        """POST /data/{object}: one record; returns it as stored."""
        body = self._request("POST", self._data(object_name), body=dict(record))
        return dict(body["record"])

    def update(
        self,
        object_name: str,
        record_id: str,
        data: Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> Record:
        """PATCH /data/{object}/{id}; with `if_match` (the `updated_at` read) only if the
        record was not changed since (else RequestRefused, code CONCURRENT_UPDATE)."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        body = self._request(
            "PATCH", f"{self._data(object_name)}/{quote(record_id, safe='')}",
            body=dict(data), headers=headers,
        )  # fmt: skip
        return dict(body.get("record") or {})

    def delete(self, object_name: str, record_id: str, *, if_match: str | None = None) -> None:
        """DELETE /data/{object}/{id}, guarded by `if_match` like `update`."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
        self._request(
            "DELETE", f"{self._data(object_name)}/{quote(record_id, safe='')}", headers=headers
        )

    def batch(
        self,
        object_name: str,
        operation: BatchOperation,
        records: Sequence[Mapping[str, Any] | str],
        *,
        atomic: bool = False,
        continue_on_error: bool = True,
    ) -> RowResults:
        """POST /data/{object}/batch, 200 records a call; one RowResult per input record.

        create: records are field dicts. update/upsert: field dicts with their `id` (sent as
        `{"id", "data"}`). delete: ids, or dicts with an `id`.
        """
        if operation not in ("create", "update", "upsert", "delete"):
            raise ValueError(f"unknown batch operation {operation!r}")
        if atomic and len(records) > BATCH_LIMIT:
            raise ValueError(
                f"an atomic batch holds at most {BATCH_LIMIT} records (got {len(records)})"
            )
        payload = [self._batch_record(operation, r, i) for i, r in enumerate(records)]
        results: RowResults = []
        for start, chunk in _chunks(payload, BATCH_LIMIT):
            if not continue_on_error and any(not r.ok for r in results):
                results.extend(_not_attempted(start, len(chunk)))
                continue
            body = self._request(
                "POST",
                f"{self._data(object_name)}/batch",
                body={
                    "operation": operation,
                    "records": chunk,
                    "options": {"atomic": atomic, "continueOnError": continue_on_error},
                },
            )
            results.extend(_batch_results(body, start, operation))
        return results

    def delete_many(self, object_name: str, ids: Iterable[str]) -> RowResults:
        """POST /data/{object}/deleteMany, 200 ids a call; a missing id fails RECORD_NOT_FOUND."""
        results: RowResults = []
        for start, chunk in _chunks([*ids], BATCH_LIMIT):
            body = self._request(
                "POST", f"{self._data(object_name)}/deleteMany", body={"ids": [*chunk]}
            )
            results.extend(_batch_results(body, start, "delete"))
        return results

    def import_rows(
        self,
        object_name: str,
        rows: Sequence[Mapping[str, Any]],
        write_mode: WriteMode = "upsert",
        match_fields: Sequence[str] | None = None,
    ) -> RowResults:
        """POST /data/{object}/import (JSON rows), 5,000 a call; one RowResult per row.

        `write_mode` insert | update | upsert; update and upsert match on `match_fields`.
        Bad rows fail alone (ok=False with the server's code and message).
        """
        if write_mode not in ("insert", "update", "upsert"):
            raise ValueError(f"unknown import write mode {write_mode!r}")
        if write_mode != "insert" and not match_fields:
            raise ValueError(f"write_mode {write_mode!r} needs match_fields")
        results: RowResults = []
        for start, chunk in _chunks(rows, IMPORT_LIMIT):
            request: dict[str, Any] = {
                "format": "json",
                "writeMode": write_mode,
                "rows": [dict(r) for r in chunk],
            }
            if match_fields:
                request["matchFields"] = [*match_fields]
            body = self._request("POST", f"{self._data(object_name)}/import", body=request)
            results.extend(_import_results(body, start))
        return results

    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def _data(object_name: str) -> str:
        return f"/data/{quote(object_name, safe='')}"

    @staticmethod
    def _batch_record(operation: str, record: Mapping[str, Any] | str, index: int) -> Any:
        if operation == "create":
            if not isinstance(record, Mapping):
                raise ValueError(f"batch create: record {index} is not a dict")
            return dict(record)
        if isinstance(record, str):
            if operation != "delete":
                raise ValueError(f"batch {operation}: record {index} is an id, not a dict")
            return {"id": record}
        record_id = record.get("id")
        if not record_id:
            raise ValueError(f"batch {operation}: record {index} has no id")
        if operation == "delete":
            return {"id": record_id}
        return {"id": record_id, "data": {k: v for k, v in record.items() if k != "id"}}

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        attempt = 0
        url = self.base_url + API_PREFIX + path
        while True:
            error: ObjectStackError
            applied_maybe = True  # whether the server may have acted on the request
            self.calls += 1
            try:
                response = self._http.request(
                    method, path, params=params, json=body, headers=headers
                )
            except httpx.TimeoutException as exc:
                error = TransientError(
                    self._redact(f"{method} {url}: timed out ({type(exc).__name__})"), url=url
                )
                error.__cause__ = exc
                applied_maybe = not isinstance(exc, _UNSENT)
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                error = TransientError(
                    self._redact(f"{method} {url}: connection failed ({reason})"), url=url
                )
                error.__cause__ = exc
                applied_maybe = not isinstance(exc, _UNSENT)
            else:
                if response.status_code < 400:
                    return response.json() if response.content else {}
                error = self._error(method, url, response)
                applied_maybe = response.status_code not in _NOT_APPLIED
            if not isinstance(error, TransientError):
                raise error
            if method != "GET" and applied_maybe and not self.retry_ambiguous:
                error.message = f"{error.message} (not retried: the server may have applied it)"
                error.args = (error.message,)
                raise error
            if attempt >= self.max_retries:
                if attempt:
                    error.message = f"{error.message} (gave up after {attempt + 1} attempts)"
                    error.args = (error.message,)
                raise error
            delay = self.backoff * 2**attempt if error.retry_after is None else error.retry_after
            self._sleep(min(delay, self.max_backoff))
            attempt += 1

    def _error(self, method: str, url: str, response: httpx.Response) -> ObjectStackError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"error": response.text[:500]} if response.text else {}
        code = body.get("code") if isinstance(body.get("code"), str) else None
        text = body.get("error")
        if not isinstance(text, str) or not text or text == code:
            text = body.get("message") if isinstance(body.get("message"), str) else None
        text = self._redact(text or response.reason_phrase or "no message")
        label = f"HTTP {status}" + (f" {code}" if code else "")
        if status in (401, 403):
            return AuthError(
                f"ObjectStack at {self.base_url} refused the credentials ({label}: {text}); "
                "check the API key configured for this server",
                status=status,
                code=code,
                url=url,
            )
        if status == 404:
            return NotFoundError(
                f"{method} {url}: {label}: {text}", status=status, code=code, url=url
            )
        if status in _TRANSIENT_4XX or (status >= 500 and status not in _NOT_TRANSIENT_5XX):
            return TransientError(
                f"{method} {url}: {label}: {text}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
                status=status,
                code=code,
                url=url,
            )
        details = _json_or_empty(self._redact(response.text)) if response.text else {}
        return RequestRefused(
            f"{method} {url}: {label}: {text}",
            details=details if isinstance(details, dict) else {},
            status=status,
            code=code,
            url=url,
        )


def _json_or_empty(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _not_attempted(start: int, count: int) -> Iterator[RowResult]:
    for index in range(start, start + count):
        yield RowResult(
            index=index,
            ok=False,
            action="failed",
            code="NOT_ATTEMPTED",
            message="not sent: an earlier row failed and continue_on_error is False",
        )


def _batch_results(body: Mapping[str, Any], start: int, operation: str) -> Iterator[RowResult]:
    for result in body.get("results", []):
        ok = bool(result.get("success"))
        errors = result.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], Mapping) else {}
        data = result.get("data")
        yield RowResult(
            index=start + int(result["index"]),
            ok=ok,
            id=result.get("id") or (data or {}).get("id"),
            action=operation if ok else "failed",
            record=dict(data) if ok and isinstance(data, Mapping) else None,
            code=None if ok else first.get("code"),
            message=None if ok else first.get("message"),
            field=None if ok else first.get("field"),
            raw=result,
        )


def _import_results(body: Mapping[str, Any], start: int) -> Iterator[RowResult]:
    for result in body.get("results", []):
        yield RowResult(
            index=start + int(result["row"]) - 1,
            ok=bool(result.get("ok")),
            id=result.get("id"),
            action=result.get("action"),
            code=result.get("code"),
            message=result.get("error"),
            field=result.get("field"),
            raw=result,
        )
