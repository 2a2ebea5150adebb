"""A JSON API over HTTP, described by its settings (settings.py), behind the connector
contract, through the shared client (web.py: retries honouring Retry-After, token refresh,
pacing, call counts, secrets redacted).

- Reads page through the read endpoint by cursor, offset, page number or Link header, taking
  the records at `recordPath`. The API promises no order, so with `read.ordered` (the
  default) what lies within the run's cursor bounds is read whole and sorted here (the
  change-time parameter, when the API has one, makes that read only the changed records);
  filters are evaluated by the engine.
- Lookups ask the lookup endpoint for a batch's keys in one call, or read the set whole.
- Writes go to the endpoint of their operation (an insert or update without its own endpoint
  uses the upsert endpoint: the engine has already looked the records up), `batch` records a
  call. What the API refuses comes back per record: a single-record call's 4xx with the API's
  code and message, a batch answer's `errorsPath` entries; a batch refused as a whole is a
  BatchRefused.
- Values are JSON: each field is read back as its kind (`fields`, or inferred from the first
  page: ISO-8601 texts as datetimes or dates), and datetimes, dates, decimals and uuids are
  written as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import httpx

from ..base import (
    CURSOR_COLUMN,
    ApiUsage,
    BatchRefused,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    Refusal,
    WriteResult,
)
from ..web import ApiClient, ApiError, Auth, BasicAuth, HeaderAuth, TokenAuth, bearer
from .settings import (
    ApiKeyAuth,
    BasicAuthSettings,
    BearerAuth,
    HttpSettings,
    OAuth2ClientCredentials,
    WriteEndpoint,
)

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# -- authentication ---------------------------------------------------------------------------
class QueryAuth(Auth):
    """An API key in a query parameter."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def apply(self, client: ApiClient, request: httpx.Request) -> None:
        request.url = request.url.copy_merge_params({self.name: self.value})

    def secrets(self) -> list[str]:
        return [self.value, quote(self.value, safe="")]


def _client_credentials(client: ApiClient, auth: OAuth2ClientCredentials) -> TokenAuth:
    """An OAuth2 client-credentials grant (RFC 6749 4.4), the client authenticated in the
    form body; fetched when first needed and again after a 401."""
    secret = auth.client_secret.get_secret_value()

    def fetch() -> tuple[str, Mapping[str, Any]]:
        form = {"grant_type": "client_credentials", "client_id": auth.client_id,
                "client_secret": secret, **({"scope": auth.scope} if auth.scope else {})}
        answer = client.request(
            "POST", auth.token_url, content=urlencode(form), authenticated=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            token = answer.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(f"{client.display}: the token endpoint answered without an "
                                 "access_token") from None
        return str(token), {}

    return TokenAuth(fetch, known_secrets=[secret])


def make_client(settings: HttpSettings, display: str) -> ApiClient:
    client = ApiClient(settings.base_url, display=display, timeout=settings.timeout,
                       max_retries=settings.max_retries, min_interval=settings.min_interval)
    auth = settings.auth
    found: Auth | None = None
    if isinstance(auth, BearerAuth):
        found = bearer(auth.token.get_secret_value())
    elif isinstance(auth, ApiKeyAuth):
        key = auth.key.get_secret_value()
        found = (QueryAuth(auth.query, key) if auth.query is not None
                 else HeaderAuth(auth.header or "X-API-Key", key, auth.prefix))
    elif isinstance(auth, BasicAuthSettings):
        found = BasicAuth(auth.username, auth.password.get_secret_value())
    elif isinstance(auth, OAuth2ClientCredentials):
        found = _client_credentials(client, auth)
    client.auth = found or Auth()
    return client


# -- values -----------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def infer_kind(value: Any) -> str:
    """The portable kind of a JSON value (texts that are ISO-8601 dates or datetimes too)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict | list):
        return "json"
    if isinstance(value, str):
        if _DATETIME.match(value):
            return "datetime"
        if _DATE.match(value):
            return "date"
        return "text"
    return "unknown"


def from_json(value: Any, kind: str) -> Any:
    """A JSON value as the field's kind holds it (left as it is where it does not parse)."""
    if value is None:
        return None
    try:
        if kind == "datetime" and isinstance(value, str):
            return _parse_datetime(value)
        if kind == "date" and isinstance(value, str):
            return date.fromisoformat(value[:10])
        if kind == "integer" and not isinstance(value, bool):
            return int(value)
        if kind == "float" and not isinstance(value, bool):
            return float(value)
        if kind == "decimal":
            return Decimal(str(value))
        if kind == "text" and not isinstance(value, str):
            return str(value)
    except (TypeError, ValueError, ArithmeticError):
        return value
    return value


def dig(body: Any, path: str) -> Any:
    """The value at a dot path of a JSON answer (empty path: the answer)."""
    for part in [p for p in path.split(".") if p]:
        if isinstance(body, dict):
            body = body.get(part)
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return None
    return body


def _place(body: Any, path: str) -> Any:
    """`body` put at a dot path of a new JSON object (empty path: `body` itself)."""
    for part in reversed([p for p in path.split(".") if p]):
        body = {part: body}
    return body


def _sortable(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is not None, v if v is not None else 0) for v in values)


class HttpRecords(Endpoint):
    """One record set of a JSON API, as its settings describe it."""

    def __init__(self, settings: HttpSettings, resource: str, display: str,
                 client: ApiClient | None = None) -> None:
        self.settings = settings
        self.resource = resource
        self.display = display or f"http.{resource}"
        self.client = client or make_client(settings, self.display)
        self._described: Description | None = None
        w = settings.write
        sizes = [e.batch for e in (w.insert, w.update, w.upsert, w.delete) if e is not None]
        self.capabilities = Capabilities(
            transactional=False, filter_pushdown=False,
            ordered_reads=settings.read is not None and settings.read.ordered,
            native_upsert=w.upsert is not None, max_batch_size=max(sizes) if sizes else None,
            rate_limit=1 / settings.min_interval if settings.min_interval else None)

    # -- paths ------------------------------------------------------------------------------
    def _path(self, template: str, record: Mapping[str, Any] | None = None) -> str:
        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "resource":
                return quote(self.resource, safe="")
            if record is None or record.get(name) is None:
                raise ConnectorError(f"{self.display}: the path {template} needs the record's "
                                     f"{name}, which it does not have")
            return quote(str(_json_value(record[name])), safe="")
        return _PLACEHOLDER.sub(fill, template)

    # -- describe ---------------------------------------------------------------------------
    def _first_page(self) -> list[Record] | None:
        """The first page of the read endpoint, or None where the record set is missing."""
        read = self.settings.read
        if read is None:
            return None
        try:
            return next(self._api_pages(), [])
        except ApiError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def describe(self, *, refresh: bool = False) -> Description:
        if self._described is not None and not refresh:
            return self._described
        key = tuple(self.settings.key)
        fields = self.settings.fields
        exists = True
        if self.settings.read is not None:
            page = self._first_page()
            exists = page is not None
            if fields is None:
                fields = {}
                for record in page or []:
                    for name, value in record.items():
                        if fields.get(name, "unknown") == "unknown":
                            fields[name] = infer_kind(value)
        found = Description(
            fields={n: FieldInfo(n, None, n not in key, k) for n, k in (fields or {}).items()},
            primary_key=key, exists=exists)
        self._described = found
        return found

    def _kinds(self) -> dict[str, str]:
        return {n: f.kind for n, f in self.describe().fields.items()}

    # -- read -------------------------------------------------------------------------------
    def _records(self, body: Any, path: str) -> list[Record]:
        found = dig(body, path)
        if not isinstance(found, list):
            raise ConnectorError(f"{self.display}: the answer has no list of records at "
                                 f"'{path or '(the answer)'}'")
        return [r for r in found if isinstance(r, dict)]

    def _api_pages(self, extra: Mapping[str, Any] | None = None) -> Iterator[list[Record]]:
        """The read endpoint's pages, as the API sends them."""
        read = self.settings.read
        assert read is not None
        p = read.pagination
        path = self._path(read.path)
        params: dict[str, Any] = {**read.params, **(extra or {})}
        if p.type != "none" and p.limit_param:
            params[p.limit_param] = p.page_size
        offset, number = 0, p.first_page
        while True:
            if p.type == "offset":
                params[p.offset_param] = offset
            elif p.type == "page":
                params[p.page_param] = number
            response = self.client.request(read.method, path, params=params or None)
            page = self._records(response.json() if response.content else None,
                                 read.record_path)
            if page:
                yield page
            if p.type == "none" or not page:
                return
            if p.type == "cursor":
                cursor = dig(response.json(), p.cursor_path)
                if cursor in (None, ""):
                    return
                params[p.cursor_param] = cursor
            elif p.type == "link":
                nxt = response.links.get("next", {}).get("url")
                if not nxt:
                    return
                path, params = str(nxt), {}  # the link carries every parameter
            elif len(page) < p.page_size:
                return
            offset += len(page)
            number += 1

    def _typed(self, records: Sequence[Record]) -> list[Record]:
        kinds = self._kinds()
        return [{n: from_json(v, kinds.get(n, "unknown")) for n, v in r.items()}
                for r in records]

    def _all(self, extra: Mapping[str, Any] | None = None) -> Iterator[Record]:
        for page in self._api_pages(extra):
            yield from self._typed(page)

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        read = self.settings.read
        if read is None:
            raise ConnectorError(f"{self.display} has no read endpoint: give `read` in the "
                                 "connector's settings to read it")
        ctf = request.cursor_field
        extra: dict[str, Any] = {}
        inc = read.incremental
        if inc is not None and ctf == inc.field and request.lower is not None:
            extra[inc.param] = _json_value(request.lower)
        if not self.capabilities.ordered_reads:
            yield from self._pages(self._all(extra), request)
            return
        rows = list(self._all(extra))
        if request.null_cursor is not None:
            rows = [r for r in rows if r.get(request.null_cursor) is None]
        if ctf is not None:
            rows = [r for r in rows if r.get(ctf) is not None
                    and (request.lower is None or r[ctf] >= request.lower)
                    and (request.upper is None or r[ctf] <= request.upper)]
        order = list(request.order_by)
        rows.sort(key=lambda r: _sortable(tuple(r.get(c) for c in order)))
        if request.after is not None:
            after = _sortable(tuple(request.after))
            rows = [r for r in rows if _sortable(tuple(r.get(c) for c in order)) > after]
        yield from self._pages(iter(rows), request)

    @staticmethod
    def _pages(rows: Iterator[Record], request: ReadRequest) -> Iterator[list[Record]]:
        page: list[Record] = []
        for r in rows:
            out = {c: r.get(c) for c in request.columns}
            if request.cursor_field is not None:
                out[CURSOR_COLUMN] = r.get(request.cursor_field)
            page.append(out)
            if len(page) >= request.batch_size:
                yield page
                page = []
        if page:
            yield page

    def is_empty(self) -> bool:
        return not self._first_page()

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        read = self.settings.read
        if read is None:
            raise ConnectorError(f"{self.display} has no read endpoint to look records up "
                                 "with: give `read` in the connector's settings")
        wanted = set(keys)
        out_columns = list(dict.fromkeys([*key, *columns]))
        found: list[Record] = []
        lk = read.lookup
        if lk is not None and len(key) == 1:
            path = self._path(lk.path or read.path)
            values = [str(_json_value(k[0])) for k in keys if k[0] is not None]
            for start in range(0, len(values), lk.max_keys):
                chunk = values[start : start + lk.max_keys]
                param: Any = lk.separator.join(chunk) if lk.separator else chunk
                body = self.client.json("GET", path, params={**read.params, lk.param: param})
                found.extend(self._typed(self._records(body, read.record_path)))
        else:
            found = list(self._all())
        return [{c: r.get(c) for c in out_columns} for r in found
                if tuple(r.get(k) for k in key) in wanted]

    def count(self) -> int | None:
        if self.settings.read is None:
            return None
        try:
            return sum(len(page) for page in self._api_pages())
        except ApiError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        rows = list(self._all())
        return [len(rows), max((str(r.get(cursor_field)) for r in rows if cursor_field
                                and r.get(cursor_field) is not None), default=None)]

    # -- write ------------------------------------------------------------------------------
    def _endpoint(self, operation: Operation) -> WriteEndpoint:
        w = self.settings.write
        found = {"insert": w.insert or w.upsert, "update": w.update or w.upsert,
                 "upsert": w.upsert, "delete": w.delete}[operation]
        if found is None:
            raise ConnectorError(f"{self.display} has no endpoint to {operation} records: "
                                 f"give write.{operation} in the connector's settings")
        return found

    def _refusal(self, index: int, exc: ApiError) -> Refusal:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = str(body.get("message") or body.get("error_description") or exc)
        return Refusal(index, exc.code or f"HTTP_{exc.status}", self.client.redact(message))

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        ep = self._endpoint(operation)
        result = WriteResult()
        plain = [{n: _json_value(v) for n, v in r.items()} for r in rows]
        for start in range(0, len(plain), ep.batch):
            chunk = plain[start : start + ep.batch]
            if ep.batch == 1:
                self._write_one(ep, operation, start, chunk[0], result)
            else:
                self._write_batch(ep, start, chunk, result)
        return result

    def _write_one(self, ep: WriteEndpoint, operation: Operation, index: int,
                   record: Record, result: WriteResult) -> None:
        path = self._path(ep.path, record)
        body = None if ep.method == "DELETE" else _place(record, ep.body_path)
        try:
            self.client.request(ep.method, path, json=body)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            if exc.status == 404 and operation == "delete":
                return  # gone already: nothing to delete (and not counted deleted)
            result.refused.append(self._refusal(index, exc))
            return
        result.written += 1

    def _write_batch(self, ep: WriteEndpoint, start: int, chunk: list[Record],
                     result: WriteResult) -> None:
        try:
            answer = self.client.json(ep.method, self._path(ep.path),
                                      json=_place(chunk, ep.body_path))
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            raise BatchRefused(str(exc)) from None
        errors = dig(answer, ep.errors_path) if ep.errors_path else None
        refused = set()
        for error in errors if isinstance(errors, list) else []:
            index = error.get("index") if isinstance(error, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(chunk):
                continue
            refused.add(index)
            result.refused.append(Refusal(start + index, str(error.get("code") or ""),
                                          self.client.redact(str(error.get("message") or ""))))
        result.written += len(chunk) - len(refused)

    def usage(self) -> ApiUsage | None:
        return self.client.usage()


def open_http(settings: HttpSettings, resource: str, display: str) -> HttpRecords:
    return HttpRecords(settings, resource, display)

