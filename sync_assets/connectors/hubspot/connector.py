"""HubSpot CRM v3 objects (`type: hubspot`) behind the connector contract: one object type
(contacts, companies, deals, a custom object) is one record set, its properties the fields.

- Describe: `GET /crm/v3/properties/{objectType}`; a property's `type` gives the portable
  kind (number: decimal, read back as an integer when it holds one), `hasUniqueValue` the
  unique keys (contacts: `email` too, which HubSpot keeps unique), `readOnlyValue` or
  `calculated` the read-only fields. `hs_object_id` (the record id) is the primary key.
- Reads: the search API, sorted by the change-tracking property (`lastmodifieddate` on
  contacts, `hs_lastmodifieddate` elsewhere, or any sortable property a sync names) or by
  `hs_object_id`, bounded by GTE/LTE filters, `after`-paged 200 a page. A search answers at
  most 10,000 results: before its next page would reach past them, the read starts a new
  search from the last value read (GTE it, skipping the records of that value already read;
  GT for ids). Archived records are not returned: a mirror sync sees them gone.
- Deletes (`read_deletes`, what a mirror uses instead of reading every key): the archived
  records (`GET /crm/v3/objects/{objectType}?archived=true`, 100 a page) archived since the
  cursor, with their properties. HubSpot keeps archived records 90 days, so a cursor older
  than that reads every key instead. A record deleted for good at once (a GDPR delete) is
  not listed: a `--full-refresh` run of the mirror finds it.
- Writes: the batch endpoints, 100 inputs a call (the engine's batches are split to it),
  property values as strings (numbers as text, instants in ISO-8601 UTC, "" to clear).
  Inserts and upserts by a unique property go to `batch/upsert` with it as `idProperty`, so a
  batch repeated after a crash updates what the first attempt created instead of doubling it;
  updates to `batch/update` by `idProperty` (or id); deletes to `batch/archive` by the ids a
  batch read found. A key no property keeps unique is looked up by search (IN filters).
- Per-record failures come from 207 Multi-Status answers: each input carries its
  `objectWriteTraceId`, and an error naming it refuses that record with HubSpot's category
  and message; a record not found (deleted meanwhile) is not written, and no refusal.
- Limits: calls are paced to `requestsPer10s` (100 per 10 s), 429s retried after the
  Retry-After HubSpot sends (web.py), and the daily allowance HubSpot reports in its
  `X-HubSpot-RateLimit-Daily*` headers goes to the run's notes with the call count.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from time import monotonic, sleep
from typing import Any

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
from ..web import ApiClient, ApiError, bearer
from .settings import HubSpotSettings

#: inputs a batch call takes, results a search page holds, results a search query reaches
BATCH_LIMIT = 100
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
LIST_PAGE = 100
#: how long archived records are kept ("restore ... within 90 days")
ARCHIVE_KEPT = timedelta(days=90)
ID = "hs_object_id"

_OBJECT_TYPE = re.compile(r"^(?:[a-z][a-z0-9_]*|\d+-\d+|p\d+_[A-Za-z0-9_]+)$")
_KINDS = {"string": "text", "enumeration": "text", "phone_number": "text", "number": "decimal",
          "bool": "boolean", "date": "date", "datetime": "datetime", "json": "json",
          "object_coordinates": "text"}
_INTEGER = re.compile(r"^-?\d+$")


# -- values -------------------------------------------------------------------------------
def wire(value: Any) -> str:
    """A value as HubSpot takes it: text; "" clears a property; instants in ISO-8601 UTC
    with milliseconds (naive ones are UTC)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() \
            else format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _instant(text: str) -> datetime | None:
    """An ISO-8601 instant or epoch milliseconds as a naive UTC datetime."""
    text = text.strip()
    if _INTEGER.match(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC).replace(tzinfo=None)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def read_value(info: FieldInfo | None, text: Any) -> Any:
    """A property's text as the value of its kind."""
    if text is None or info is None or not isinstance(text, str):
        return text
    if info.name == ID:
        return text
    if info.kind == "decimal":
        if _INTEGER.match(text):
            return int(text)
        try:
            return Decimal(text)
        except InvalidOperation:
            return text
    if info.kind == "boolean":
        return text == "true" if text in ("true", "false") else text
    if info.kind == "datetime":
        return _instant(text) or text
    if info.kind == "date":
        if _INTEGER.match(text):
            moment = _instant(text)
            return moment.date() if moment else text
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            return text
    if info.kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def filter_value(info: FieldInfo | None, value: Any) -> str:
    """A value as a search filter compares it: instants as epoch milliseconds."""
    if info is not None and info.kind == "datetime":
        moment = value if isinstance(value, datetime) else _instant(str(value))
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return str(round(moment.timestamp() * 1000))
    return wire(value)


def _same(key: str, text: str) -> str:
    """A key value as HubSpot matches it (emails regardless of case)."""
    return text.lower() if key == "email" else text


def describe_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a HubSpot error: its category (or errorType) and message."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if not isinstance(body, dict):
        return "", str(body)[:300]
    code = str(body.get("category") or body.get("errorType") or "")
    return code, str(body.get("message") or body)[:500]


class Pacer:
    """Keeps calls of one kind at least `interval` seconds apart (HubSpot's search
    endpoints allow 5 a second, within the 100 per 10 s of every call)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            pause = self._last + self.interval - monotonic()
            if pause > 0:
                sleep(pause)
            self._last = monotonic()


# -- clients: one per account in a process, so its pace is kept across endpoints -------------
_CLIENTS: dict[tuple[Any, ...], tuple[ApiClient, Pacer]] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(settings: HubSpotSettings) -> tuple[ApiClient, Pacer]:
    token = settings.token.get_secret_value()
    key = (settings.base_url, token, settings.requests_per_10s, settings.searches_per_second,
           settings.timeout, settings.max_retries)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            client = ApiClient(settings.base_url, display="HubSpot", auth=bearer(token),
                               timeout=settings.timeout, max_retries=settings.max_retries,
                               min_interval=10.0 / settings.requests_per_10s,
                               describe_error=describe_error,
                               headers={"Accept": "application/json"})
            found = _CLIENTS[key] = (client, Pacer(1.0 / settings.searches_per_second))
        return found


def get_client(settings: HubSpotSettings) -> ApiClient:
    """The process's client of the account `settings` name."""
    return _client(settings)[0]


def close_clients() -> None:
    with _CLIENTS_LOCK:
        for client, _pacer in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


def open_hubspot(settings: HubSpotSettings, resource: str, display: str) -> HubSpotObjects:
    """The endpoint of one object type of the account `settings` name."""
    object_type = resource.strip()
    if not _OBJECT_TYPE.match(object_type):
        raise ConnectorError(f"{display}: externalResource '{resource}' is no HubSpot object "
                             "type: use contacts, companies, deals, tickets, or a custom "
                             "object's type id such as 2-1234567")
    client, searches = _client(settings)
    return HubSpotObjects(client, object_type, display, searches=searches)


class HubSpotObjects(Endpoint):
    """One HubSpot object type, through the CRM v3 search and batch endpoints."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=False, ordered_reads=True, shards=False,
        native_upsert=False, max_batch_size=BATCH_LIMIT, rate_limit=10.0, hosts_state=False,
        creates_resource=False, concurrent_writers=1, idempotent_inserts=False,
    )

    def __init__(self, client: ApiClient, object_type: str, display: str | None = None,
                 searches: Pacer | None = None) -> None:
        self.client = client
        self.searches = searches or Pacer(0.2)
        self.object_type = object_type
        self.display = display or f"hubspot.{object_type}"
        self.api_calls = 0
        self._desc: Description | None = None
        self._lock = threading.Lock()
        self._base = f"/crm/v3/objects/{object_type}"

    # -- calls ------------------------------------------------------------------------------
    def usage(self) -> ApiUsage:
        return ApiUsage(calls=self.api_calls, notes=self.client.usage().notes)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, counted; its rate-limit headers noted; its body as JSON."""
        before = self.client.calls
        try:
            response = self.client.request(method, path, **kwargs)
        finally:
            with self._lock:
                self.api_calls += self.client.calls - before
        daily = response.headers.get("X-HubSpot-RateLimit-Daily")
        left = response.headers.get("X-HubSpot-RateLimit-Daily-Remaining")
        if daily and left:
            self.client.note("daily", f"HubSpot daily limit: {left} of {daily} calls left")
        if not response.content:
            return None
        return response.json()

    def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        """A reading request: a refusal fails the run with HubSpot's reason."""
        try:
            return self._json(method, path, **kwargs)
        except ApiError as exc:
            raise ConnectorError(f"{self.display}: {exc}") from None

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        if self._desc is not None and not refresh:
            return self._desc
        try:
            body = self._json("GET", f"/crm/v3/properties/{self.object_type}")
        except ApiError as exc:
            if exc.status in (400, 404):
                return Description(fields={}, exists=False)
            raise ConnectorError(f"{self.display}: {exc}") from None
        fields: dict[str, FieldInfo] = {}
        uniques: list[tuple[str, ...]] = []
        for prop in body.get("results", []):
            name = prop["name"]
            meta = prop.get("modificationMetadata") or {}
            read_only = bool(meta.get("readOnlyValue")) or bool(prop.get("calculated"))
            kind = "text" if name == ID else _KINDS.get(prop.get("type", ""), "unknown")
            fields[name] = FieldInfo(name, prop.get("type"), nullable=name != ID, kind=kind,
                                     read_only=read_only)
            if prop.get("hasUniqueValue") and name != ID:
                uniques.append((name,))
        if self.object_type == "contacts" and "email" in fields and ("email",) not in uniques:
            uniques.append(("email",))  # HubSpot keeps one contact per email
        if ID not in fields:
            fields[ID] = FieldInfo(ID, "number", nullable=False, kind="text", read_only=True)
        self._desc = Description(fields=fields, primary_key=(ID,), unique_keys=tuple(uniques))
        return self._desc

    def _fields(self) -> Mapping[str, FieldInfo]:
        desc = self.describe()
        if not desc.exists:
            raise ConnectorError(f"{self.display}: HubSpot has no object type "
                                 f"'{self.object_type}' (or the token may not read it)")
        return desc.fields

    def _known(self, names: Sequence[str], doing: str) -> None:
        fields = self._fields()
        missing = [n for n in names if n not in fields]
        if missing:
            raise ConnectorError(f"{doing} {self.display}: no property "
                                 f"{', '.join(missing)}; create it in HubSpot first (known: "
                                 f"{', '.join(sorted(fields))})")

    def _unique(self, key: Sequence[str]) -> bool:
        return len(key) == 1 and (key[0] == ID or (key[0],) in self.describe().unique_keys)

    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        raise ConnectorError(f"{self.display}: HubSpot object types and their properties are "
                             "made in HubSpot; create them there first")

    # -- read -------------------------------------------------------------------------------
    def _search(self, body: Mapping[str, Any]) -> Any:
        self.searches.wait()
        return self._read("POST", f"{self._base}/search", json=body)

    def _row(self, result: Mapping[str, Any], columns: Sequence[str]) -> Record:
        fields = self._fields()
        props = result.get("properties") or {}
        return {c: result["id"] if c == ID else read_value(fields.get(c), props.get(c))
                for c in columns}

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        fields = self._fields()
        ctf = request.cursor_field
        self._known([*request.columns, *([ctf] if ctf else []),
                     *([request.null_cursor] if request.null_cursor else [])], "reading")
        order = list(request.order_by)
        # one sort a search: the cursor where pages go in its order, else the record id
        sort = ctf if ctf and order and order[0] == ctf else ID
        info = fields.get(sort)
        base: list[dict[str, Any]] = []
        if ctf:
            base.append({"propertyName": ctf, "operator": "HAS_PROPERTY"})
            if request.lower is not None:
                base.append({"propertyName": ctf, "operator": "GTE",
                             "value": filter_value(fields[ctf], request.lower)})
            if request.upper is not None:
                base.append({"propertyName": ctf, "operator": "LTE",
                             "value": filter_value(fields[ctf], request.upper)})
        if request.null_cursor:
            base.append({"propertyName": request.null_cursor, "operator": "NOT_HAS_PROPERTY"})
        props = list(dict.fromkeys([*request.columns, sort, *([ctf] if ctf else [])]))
        limit = min(SEARCH_PAGE, max(1, int(request.batch_size)))
        anchor: str | None = None  # the value a re-anchored search starts at
        seen_at_anchor: set[str] = set()
        last_value: str | None = None
        at_last: set[str] = set()
        after: str | None = None
        fetched = 0
        while True:
            filters = list(base)
            if anchor is not None:
                filters.append({"propertyName": sort, "operator": "GT" if sort == ID else "GTE",
                                "value": anchor})
            body: dict[str, Any] = {"sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                                    "properties": props, "limit": limit}
            if filters:
                body["filterGroups"] = [{"filters": filters}]
            if after is not None:
                body["after"] = after
            data = self._search(body)
            results = data.get("results") or []
            out = []
            for result in results:
                rid = str(result["id"])
                value = rid if sort == ID else (result.get("properties") or {}).get(sort)
                if value == last_value:
                    if rid in seen_at_anchor:
                        continue  # read before this search re-anchored at its value
                    at_last.add(rid)
                else:
                    last_value, at_last = value, {rid}
                row = self._row(result, request.columns)
                if ctf:
                    row[CURSOR_COLUMN] = read_value(fields[ctf], (result.get("properties")
                                                                  or {}).get(ctf))
                out.append(row)
            if out:
                yield out
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not results or not after:
                return
            fetched += len(results)
            if fetched + limit > SEARCH_CAP:
                # the next page would reach past the search's cap: search again from here
                start = filter_value(info, last_value) if last_value is not None else None
                if start is None or (sort != ID and start == anchor):
                    raise ConnectorError(
                        f"reading {self.display}: more than {SEARCH_CAP} records hold "
                        f"{sort} = {last_value}, which HubSpot's search cannot page through")
                anchor, after, fetched = start, None, 0
                seen_at_anchor = set(at_last) if sort != ID else set()

    def read_deletes(self, request: ReadRequest) -> Iterator[list[Record]] | None:
        ctf = request.cursor_field
        if ctf is None or request.lower is None:
            return None
        lower = request.lower
        if isinstance(lower, datetime) and lower.tzinfo is not None:
            lower = lower.astimezone(UTC).replace(tzinfo=None)
        if not isinstance(lower, datetime):
            return None  # archives are stamped in time; a cursor of another kind cannot say
        if lower < datetime.now(UTC).replace(tzinfo=None) - ARCHIVE_KEPT:
            return None
        columns = [c for c in request.columns if c != CURSOR_COLUMN]
        self._known(columns, "reading deletes of")
        return self._archived_since(lower, columns, max(1, int(request.batch_size)))

    def _archived_since(self, lower: datetime, columns: Sequence[str], size: int
                        ) -> Iterator[list[Record]]:
        props = ",".join(c for c in columns if c != ID)
        after: str | None = None
        out: list[Record] = []
        while True:
            params: dict[str, Any] = {"archived": "true", "limit": LIST_PAGE}
            if props:
                params["properties"] = props
            if after is not None:
                params["after"] = after
            data = self._read("GET", self._base, params=params)
            for result in data.get("results") or []:
                at = _instant(str(result.get("archivedAt") or ""))
                if at is None or at >= lower:  # no time said: reported, to be safe
                    out.append(self._row(result, columns))
            while len(out) >= size:
                yield out[:size]
                out = out[size:]
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        if out:
            yield out

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        fields = self._fields()
        self._known([cursor_field], "reading")
        data = self._search({
            "filterGroups": [{"filters": [{"propertyName": cursor_field,
                                           "operator": "HAS_PROPERTY"}]}],
            "sorts": [{"propertyName": cursor_field, "direction": "DESCENDING"}],
            "properties": [cursor_field], "limit": 1})
        results = data.get("results") or []
        if not results:
            return None
        return read_value(fields[cursor_field], results[0]["properties"].get(cursor_field))

    # -- finding records by key ---------------------------------------------------------------
    def _matches(self, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
                 properties: Sequence[str]) -> list[tuple[int, Mapping[str, Any]]]:
        """(index in `keys`, record) for each record a key finds."""
        by_value: dict[tuple[str, ...], list[int]] = {}
        for i, values in enumerate(keys):
            if any(v is None for v in values):
                continue  # HubSpot cannot match an empty value
            normal = tuple(_same(k, wire(v)) for k, v in zip(key, values, strict=True))
            by_value.setdefault(normal, []).append(i)
        if not by_value:
            return []
        props = list(dict.fromkeys([*[k for k in key if k != ID], *properties]))
        props = [p for p in props if p != ID]
        found: list[tuple[int, Mapping[str, Any]]] = []
        wanted = list(by_value)
        if self._unique(key):
            for start in range(0, len(wanted), BATCH_LIMIT):
                chunk = wanted[start:start + BATCH_LIMIT]
                body: dict[str, Any] = {"inputs": [{"id": v[0]} for v in chunk],
                                        "properties": props, "propertiesWithHistory": []}
                if key[0] != ID:
                    body["idProperty"] = key[0]
                data = self._read("POST", f"{self._base}/batch/read", json=body)
                for result in data.get("results") or []:
                    held = result["id"] if key[0] == ID else (result.get("properties")
                                                             or {}).get(key[0])
                    if held is None:
                        continue
                    for i in by_value.get((_same(key[0], held),), []):
                        found.append((i, result))
            return found
        # a key no property keeps unique: searched by IN filters, matched here exactly
        for start in range(0, len(wanted), BATCH_LIMIT):
            chunk = wanted[start:start + BATCH_LIMIT]
            filters = [{"propertyName": k, "operator": "IN",
                        "values": sorted({v[j] for v in chunk})} for j, k in enumerate(key)]
            after: str | None = None
            while True:
                body = {"filterGroups": [{"filters": filters}], "properties": props,
                        "sorts": [{"propertyName": ID, "direction": "ASCENDING"}],
                        "limit": SEARCH_PAGE}
                if after is not None:
                    body["after"] = after
                data = self._search(body)
                for result in data.get("results") or []:
                    rprops = result.get("properties") or {}
                    held = tuple(result["id"] if k == ID else rprops.get(k) for k in key)
                    if any(h is None for h in held):
                        continue
                    normal = tuple(_same(k, h) for k, h in zip(key, held, strict=True))
                    for i in by_value.get(normal, []):
                        found.append((i, result))
                after = ((data.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
                if int(after) + SEARCH_PAGE > SEARCH_CAP:
                    raise ConnectorError(f"{self.display}: over {SEARCH_CAP} records match "
                                         f"100 values of {', '.join(key)}; use a unique key")
        return found

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        key = list(key)
        self._known([*key, *columns], "reading")
        fields = self._fields()
        out = []
        for i, result in self._matches(key, keys, columns):
            row: Record = dict(zip(key, keys[i], strict=True))  # as the engine gave them
            props = result.get("properties") or {}
            for c in columns:
                if c not in row:
                    row[c] = result["id"] if c == ID else read_value(fields.get(c),
                                                                      props.get(c))
            out.append(row)
        return out

    # -- write ------------------------------------------------------------------------------
    def _properties(self, row: Record) -> dict[str, str]:
        """What a write sends of a row: every settable property, as text."""
        fields = self._fields()
        return {n: wire(v) for n, v in row.items()
                if n != CURSOR_COLUMN and n != ID and not fields[n].read_only}

    def _batch(self, action: str, inputs: list[dict[str, Any]], rows: Sequence[int],
               result: WriteResult) -> None:
        """Send inputs (one per row index in `rows`) in calls of 100; count what was written
        and refuse what a 207 answer names, with HubSpot's category and message."""
        for start in range(0, len(inputs), BATCH_LIMIT):
            chunk = inputs[start:start + BATCH_LIMIT]
            indexes = rows[start:start + BATCH_LIMIT]
            if action != "archive":  # archive takes ids alone
                for j, item in enumerate(chunk):
                    item["objectWriteTraceId"] = str(j)
            try:
                data = self._json("POST", f"{self._base}/batch/{action}",
                                  json={"inputs": chunk})
            except ApiError as exc:
                if exc.status in (400, 409, 422):
                    raise BatchRefused(str(exc)) from None
                raise ConnectorError(f"{self.display}: {exc}") from None
            if data is None:  # 204: archived
                result.written += len(set(indexes))
                continue
            id_property = str(chunk[0].get("idProperty", ""))
            refused: dict[int, Refusal] = {}
            missing: set[str] = set()
            loose: list[tuple[str, str]] = []
            for error in data.get("errors") or []:
                context = error.get("context") or {}
                code = str(error.get("category") or "ERROR")
                message = str(error.get("message") or code)
                traces = context.get("objectWriteTraceId") or []
                for trace in traces:
                    j = int(trace)
                    refused.setdefault(j, Refusal(indexes[j], code, message))
                if code == "OBJECT_NOT_FOUND":
                    missing.update(_same(id_property, str(i)) for i in context.get("ids") or [])
                elif not traces:
                    loose.append((code, message))
            # an error naming no input: the inputs whose results came back were written
            echoed = {str(r.get("objectWriteTraceId")) for r in data.get("results") or []}
            done: set[int] = set()
            for j, item in enumerate(chunk):
                if j in refused:
                    continue
                if _same(id_property, str(item.get("id", ""))) in missing:
                    continue  # gone meanwhile: nothing to write, nothing refused
                if loose and str(j) not in echoed:
                    code, message = loose[0]
                    refused[j] = Refusal(indexes[j], code, message)
                    continue
                done.add(indexes[j])
            result.written += len(done - {r.index for r in refused.values()})
            result.refused.extend(refused.values())

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        key = list(key)
        result = WriteResult()
        if not rows:
            return result
        self._known([n for n in dict.fromkeys(n for r in rows for n in r)
                     if n != CURSOR_COLUMN] + key, "writing to")
        if operation == "delete":
            return self._archive(key, rows)
        if ID in key and operation in ("insert", "upsert"):
            raise ConnectorError(f"{operation} into {self.display} by {ID}: HubSpot assigns "
                                 "record ids; match by a unique property (email) instead")
        if operation in ("insert", "upsert") and self._unique(key):
            self._upsert(key[0], rows, result)
        elif operation == "update" and self._unique(key):
            self._update(key[0], rows, range(len(rows)), result)
        elif operation == "insert":
            self._batch("create", [{"properties": self._properties(r), "associations": []}
                                   for r in rows], list(range(len(rows))), result)
        else:  # update or upsert by a key HubSpot does not keep unique: found by search
            found = self._matches(key, [tuple(r.get(k) for k in key) for r in rows], [])
            targets = [(i, str(record["id"])) for i, record in found]
            inputs = [{"id": rid, "properties": self._properties(rows[i])} for i, rid in targets]
            self._batch("update", inputs, [i for i, _ in targets], result)
            matched = {i for i, _ in targets}
            missing = [i for i in range(len(rows)) if i not in matched]
            if operation == "upsert" and missing:
                self._batch("create", [{"properties": self._properties(rows[i]),
                                        "associations": []} for i in missing], missing, result)
        result.refused.sort(key=lambda r: r.index)
        return result

    def _rounds(self, name: str, rows: Sequence[Record],
                indexes: Sequence[int]) -> Iterator[list[int]]:
        """Row indexes in rounds whose key values differ: HubSpot refuses a batch naming one
        record twice. A row without a key value is refused here."""
        left = list(indexes)
        while left:
            seen: set[str] = set()
            now, later = [], []
            for i in left:
                normal = _same(name, wire(rows[i].get(name)))
                (later if normal in seen else now).append(i)
                seen.add(normal)
            yield now
            left = later

    def _keyed(self, name: str, rows: Sequence[Record], indexes: Sequence[int],
               result: WriteResult) -> list[int]:
        kept = []
        for i in indexes:
            if rows[i].get(name) is None or wire(rows[i].get(name)) == "":
                result.refused.append(Refusal(i, "KEY_MISSING", f"no {name} to match by"))
            else:
                kept.append(i)
        return kept

    def _upsert(self, name: str, rows: Sequence[Record], result: WriteResult) -> None:
        for batch in self._rounds(name, rows, self._keyed(name, rows, range(len(rows)),
                                                          result)):
            inputs = [{"idProperty": name, "id": wire(rows[i][name]),
                       "properties": self._properties(rows[i])} for i in batch]
            self._batch("upsert", inputs, batch, result)

    def _update(self, name: str, rows: Sequence[Record], indexes: Sequence[int],
                result: WriteResult) -> None:
        for batch in self._rounds(name, rows, self._keyed(name, rows, indexes, result)):
            inputs = []
            for i in batch:
                item: dict[str, Any] = {"id": wire(rows[i][name]),
                                        "properties": self._properties(rows[i])}
                if name != ID:
                    item["idProperty"] = name
                inputs.append(item)
            self._batch("update", inputs, batch, result)

    def _archive(self, key: Sequence[str], rows: Sequence[Record]) -> WriteResult:
        """Archive the records the rows' keys find (found first: archive answers 204 for
        ids it does not know, so only a found record counts as deleted)."""
        result = WriteResult()
        found = self._matches(key, [tuple(r.get(k) for k in key) for r in rows], [])
        ids: dict[str, int] = {}  # each record once, for the first row that found it
        for i, record in found:
            ids.setdefault(str(record["id"]), i)
        if not ids:
            return result
        self._batch("archive", [{"id": rid} for rid in ids], list(ids.values()), result)
        result.written = len({i for i, _ in found})  # rows whose records are now archived
        return result

    # -- orchestration ------------------------------------------------------------------------
    def _modified(self) -> str:
        return "lastmodifieddate" if self.object_type == "contacts" else "hs_lastmodifieddate"

    def count(self) -> int | None:
        if not self.describe().exists:
            return None
        return int(self._search({"limit": 1, "properties": [ID]}).get("total", 0))

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        """[records, the largest change time]: HubSpot stamps every write."""
        cursor = cursor_field or self._modified()
        self._known([cursor], "reading")
        data = self._search({"sorts": [{"propertyName": cursor, "direction": "DESCENDING"}],
                             "properties": [cursor], "limit": 1})
        results = data.get("results") or []
        return [data.get("total", 0),
                results[0]["properties"].get(cursor) if results else None]
