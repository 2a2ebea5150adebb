"""One sObject of a Salesforce org behind the connector contract (`type: salesforce`,
`externalResource: Contact`).

- Describe: `GET sobjects/{name}/describe`; a field's portable kind from its type (a number of
  scale 0 is an integer), read-only when it can be neither created nor updated; External ID
  fields that are unique are the object's unique keys.
- Reads: SOQL, keyset-paged on the request's order (the change-tracking field, SystemModstamp
  by choice, then the key) with `Id` last as the tie-breaker, one query a page (`LIMIT`), a
  page over the query's own page size followed through `nextRecordsUrl`. Filters are not
  pushed down: the engine evaluates them. SOQL datetime literals carry no fraction, so bounds
  are widened to the whole second (the engine's inclusive lower bound stays inclusive).
- Writes: insert and upsert match by an External ID field (the `matchKey`) through sObject
  Collections upsert (`PATCH composite/sobjects/{object}/{field}`, 200 records a call), which
  makes a write repeated after a crash land on the same record; update and delete by `Id`
  (found by the key with SOQL, or the key is `Id`). A batch of at least `bulkThreshold`
  records is one Bulk API 2.0 ingest job (CSV), its successful, failed and unprocessed results
  read back: failed records are per-record refusals with Salesforce's code and message;
  unprocessed ones make the batch a TransientError (it is repeated: every operation here is
  idempotent).
- Before the first write of an endpoint, ingest jobs on the object still being processed
  (a run killed after closing one) are waited for, so that such a job cannot land over what
  this run writes.
- Deletes reported by the org (`read_deletes`, what a mirror uses instead of reading every
  key): the Ids from the getDeleted resource since the cursor, and the deleted records' fields
  from queryAll (`IsDeleted = true`). None, so the mirror reads every key, when the cursor is
  older than the 15 days getDeleted covers, when the recycle bin was emptied since the cursor
  (`earliestDateAvailable`), or when a deleted record's fields are gone and the key is not
  `Id`.
"""

from __future__ import annotations

import base64
import csv
import io
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from simple_salesforce.format import quote_soql_value

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
    TransientError,
    WriteResult,
)
from ..web import ApiError
from .client import SalesforceClient
from .settings import SalesforceSettings

#: records per sObject Collections call, the API's maximum
COLLECTION_LIMIT = 200
#: records a query answers per page without LIMIT (the REST API's page size)
QUERY_PAGE = 2000
#: keys per lookup query, and the longest WHERE clause a lookup sends (a GET's URL is limited)
LOOKUP_CHUNK = 200
#: how far back getDeleted reports deletes ("no more than 15 days previous")
DELETES_KEPT = timedelta(days=15)
LOOKUP_WHERE_CHARS = 9000
#: Bulk API 2.0 job states that end a job
TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})
#: the value a Bulk API CSV sends to set a field to null (an empty value leaves it as is)
CSV_NULL = "#N/A"

_TEXT = frozenset({"id", "string", "textarea", "email", "phone", "url", "picklist",
                   "multipicklist", "combobox", "reference", "encryptedstring"})
_NUMBER = frozenset({"double", "currency", "percent"})
_KINDS = {"boolean": "boolean", "int": "integer", "long": "integer", "date": "date",
          "datetime": "datetime", "time": "time", "base64": "binary", "address": "json",
          "location": "json"}


def field_kind(meta: Mapping[str, Any]) -> str:
    """The portable kind of a field from its describe entry."""
    kind = str(meta.get("type") or "")
    if kind in _TEXT:
        return "text"
    if kind in _NUMBER:
        return "integer" if meta.get("scale") == 0 else "decimal"
    return _KINDS.get(kind, "unknown")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _soql_instant(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime | None:
    try:
        return _utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        return None


def soql_value(value: Any, kind: str) -> str:
    """A value as a SOQL literal for a field of this kind: datetimes in UTC to the second
    (SOQL literals take no fraction), everything else as simple-salesforce quotes it."""
    if kind == "datetime":
        moment = value if isinstance(value, datetime) else (
            _instant(value) if isinstance(value, str) else None)
        if moment is None:
            raise ConnectorError(f"not an instant: {value!r}")
        return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "date" and isinstance(value, datetime):
        value = value.date()
    if kind == "text" and not isinstance(value, str) and value is not None:
        value = str(value)
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    return str(quote_soql_value(value))


def wire(value: Any) -> Any:
    """A value as JSON for the REST API (instants in UTC ISO 8601)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return _utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def csv_text(value: Any) -> str:
    """A value as a Bulk API 2.0 CSV cell (#N/A: null)."""
    if value is None:
        return CSV_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(wire(value))


# -- clients: one session per org and credentials in a process --------------------------------
_CLIENTS: dict[str, SalesforceClient] = {}
_CLIENTS_LOCK = threading.Lock()


def get_client(settings: SalesforceSettings) -> SalesforceClient:
    key = settings.model_dump_json()  # the settings' secrets are part of the identity
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = _CLIENTS[key] = SalesforceClient(settings)
        return found


def clients() -> list[SalesforceClient]:
    """The sessions this process opened (tests read their waits and calls)."""
    with _CLIENTS_LOCK:
        return list(_CLIENTS.values())


def close_clients() -> None:
    with _CLIENTS_LOCK:
        for found in _CLIENTS.values():
            found.close()
        _CLIENTS.clear()


def open_salesforce(settings: SalesforceSettings, resource: str,
                    display: str) -> SalesforceObject:
    return SalesforceObject(get_client(settings), resource, display, settings)


class SalesforceObject(Endpoint):
    """One sObject of an org."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=False, ordered_reads=True, shards=False,
        native_upsert=True, max_batch_size=None, hosts_state=False, creates_resource=False,
        concurrent_writers=1, idempotent_inserts=False,
    )

    def __init__(self, client: SalesforceClient, name: str, display: str | None = None,
                 settings: SalesforceSettings | None = None) -> None:
        self.client = client
        self.name = name
        self.display = display or f"salesforce.{name}"
        self.settings = settings or client.settings
        self.api_calls = 0  # this endpoint's own (a session may serve several)
        self._desc: Description | None = None
        self._external: set[str] = set()
        self._ids: dict[tuple[Any, ...], list[str]] = {}  # key -> Ids, from lookups
        self._jobs_settled = False
        self.bulk_jobs: list[str] = []

    def usage(self) -> ApiUsage:
        return ApiUsage(calls=self.api_calls, notes=self.client.api.usage().notes)

    # -- calls ------------------------------------------------------------------------------
    def _json(self, doing: str, method: str, tail: str, *, write: bool = False,
              **kwargs: Any) -> Any:
        before = self.client.calls
        try:
            return self.client.json(method, tail, **kwargs)
        except ApiError as exc:
            raise self._error(exc, doing, write) from None
        finally:  # every attempt, a token fetched on the way included
            self.api_calls += self.client.calls - before

    def _text(self, doing: str, method: str, tail: str, **kwargs: Any) -> str:
        before = self.client.calls
        try:
            return self.client.call(method, tail, **kwargs).text
        except ApiError as exc:
            raise self._error(exc, doing, False) from None
        finally:
            self.api_calls += self.client.calls - before

    def _error(self, exc: ApiError, doing: str, write: bool) -> ConnectorError:
        if write and exc.status == 400:
            return BatchRefused(f"{exc.code or 'REFUSED'}: {exc}")
        return ConnectorError(f"{doing} {self.display} failed: {exc}")

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        if self._desc is not None and not refresh:
            return self._desc
        before = self.client.calls
        try:
            meta = self.client.json("GET", f"/sobjects/{quote(self.name)}/describe")
        except ApiError as exc:
            if exc.status == 404:
                return Description(fields={}, exists=False)
            raise self._error(exc, "describing", False) from None
        finally:
            self.api_calls += self.client.calls - before
        fields: dict[str, FieldInfo] = {}
        uniques: list[tuple[str, ...]] = []
        self._external = set()
        for entry in meta.get("fields") or []:
            name = str(entry["name"])
            writable = bool(entry.get("createable")) or bool(entry.get("updateable"))
            fields[name] = FieldInfo(name, entry.get("type"),
                                     nullable=bool(entry.get("nillable", True)),
                                     kind=field_kind(entry),
                                     read_only=name != "Id" and not writable)
            if entry.get("externalId"):
                self._external.add(name)
            if entry.get("unique") and name != "Id":
                uniques.append((name,))
        self._desc = Description(fields=fields, primary_key=("Id",),
                                 unique_keys=tuple(uniques))
        return self._desc

    def _fields(self) -> Mapping[str, FieldInfo]:
        desc = self.describe()
        if not desc.exists:
            raise ConnectorError(f"{self.display}: the org has no sObject {self.name} (or "
                                 "this user cannot see it)")
        return desc.fields

    def _known(self, names: Sequence[str], doing: str) -> Mapping[str, FieldInfo]:
        fields = self._fields()
        missing = [n for n in names if n not in fields]
        if missing:
            raise ConnectorError(f"{doing} {self.display}: no field {', '.join(missing)}; "
                                 f"fields: {', '.join(fields)}")
        return fields

    # -- values -----------------------------------------------------------------------------
    def _value(self, value: Any, info: FieldInfo | None) -> Any:
        """A value as the API answered it, as the field's kind."""
        if value is None or info is None:
            return value
        kind = info.kind
        if kind == "datetime" and isinstance(value, str):
            return _instant(value) or value
        if kind == "date" and isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                return value
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind == "decimal" and isinstance(value, int | float):
            return Decimal(str(value))
        return value

    def _normal(self, key: Sequence[str], values: Sequence[Any]) -> tuple[Any, ...]:
        """Key values as Salesforce compares them: text case-insensitively, instants in UTC,
        numbers by value."""
        fields = self._fields()
        out: list[Any] = []
        for name, value in zip(key, values, strict=True):
            kind = fields[name].kind
            if value is None:
                out.append(None)
            elif kind == "text":
                out.append(str(value).casefold() if name != "Id" else str(value)[:15])
            elif kind == "datetime":
                moment = value if isinstance(value, datetime) else _instant(str(value))
                out.append(_utc(moment).replace(microsecond=0) if moment else value)
            elif kind in ("integer", "decimal") and not isinstance(value, bool):
                out.append(Decimal(str(value)))
            else:
                out.append(wire(value))
        return tuple(out)

    # -- read -------------------------------------------------------------------------------
    def _query(self, soql: str, *, all_rows: bool = False) -> Iterator[list[Record]]:
        """The pages of a SOQL query, following nextRecordsUrl."""
        resource = "/queryAll" if all_rows else "/query"
        page = self._json("reading", "GET", resource, params={"q": soql})
        while True:
            yield list(page.get("records") or [])
            following = page.get("nextRecordsUrl")
            if page.get("done", True) or not following:
                return
            page = self._json("reading", "GET", str(following))

    def _condition(self, name: str, op: str, value: Any) -> str:
        kind = self._fields()[name].kind
        if value is None:
            return f"{name} {'=' if op == '=' else '!='} null"
        return f"{name} {op} {soql_value(value, kind)}"

    def _keyset(self, order: Sequence[str], after: Sequence[Any]) -> str:
        """The records after `after` in ascending `order`, nulls first (as ORDER BY sorts)."""
        alternatives = []
        for i, name in enumerate(order):
            parts = [self._condition(order[j], "=", after[j]) for j in range(i)]
            parts.append(f"{name} != null" if after[i] is None
                         else self._condition(name, ">", after[i]))
            alternatives.append(" AND ".join(parts))
        return "(" + " OR ".join(f"({a})" for a in alternatives) + ")"

    def _where(self, request: ReadRequest) -> list[str]:
        parts = []
        if request.null_cursor is not None:
            self._known([request.null_cursor], "reading")
            parts.append(f"{request.null_cursor} = null")
        ctf = request.cursor_field
        if ctf is not None:
            instants = self._known([ctf], "reading")[ctf].kind == "datetime"
            parts.append(f"{ctf} != null")
            if request.lower is not None:  # instants to the second: still inclusive
                lower = self._floor(request.lower) if instants else request.lower
                parts.append(self._condition(ctf, ">=", lower))
            if request.upper is not None:  # instants: the whole second of the mark
                parts.append(self._condition(ctf, "<", self._ceiling(request.upper))
                             if instants else self._condition(ctf, "<=", request.upper))
        return parts

    def _floor(self, value: Any) -> Any:
        moment = value if isinstance(value, datetime) else (
            _instant(value) if isinstance(value, str) else None)
        return value if moment is None else _utc(moment).replace(microsecond=0)

    def _ceiling(self, value: Any) -> Any:
        moment = value if isinstance(value, datetime) else (
            _instant(value) if isinstance(value, str) else None)
        if moment is None:
            return value
        return _utc(moment).replace(microsecond=0) + timedelta(seconds=1)

    def _select(self, fields: Sequence[str], where: Sequence[str],
                order: Sequence[str] = (), limit: int | None = None,
                descending: bool = False) -> str:
        soql = f"SELECT {', '.join(fields)} FROM {self.name}"
        if where:
            soql += " WHERE " + " AND ".join(where)
        if order:
            way = "DESC NULLS LAST" if descending else "ASC NULLS FIRST"
            soql += " ORDER BY " + ", ".join(f"{o} {way}" for o in order)
        if limit is not None:
            soql += f" LIMIT {limit}"
        return soql

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        ctf = request.cursor_field
        order = list(request.order_by) or ["Id"]
        if "Id" not in order:
            order.append("Id")  # a total order: Ids are unique
        wanted = list(request.columns)
        fields = self._known(list(dict.fromkeys([*wanted, *order, *([ctf] if ctf else [])])),
                             "reading")
        selected = list(dict.fromkeys(["Id", *wanted, *order, *([ctf] if ctf else [])]))
        where = self._where(request)
        after = tuple(request.after) if request.after is not None else None
        after_order = list(request.order_by) or ["Id"]
        size = max(1, int(request.batch_size))
        while True:
            keyset = [self._keyset(after_order, after)] if after is not None else []
            soql = self._select(selected, [*where, *keyset], order, size)
            records = [r for page in self._query(soql) for r in page]
            if not records:
                return
            out = []
            for record in records:
                row = {c: self._value(record.get(c), fields.get(c)) for c in wanted}
                if ctf is not None:
                    row[CURSOR_COLUMN] = self._value(record.get(ctf), fields.get(ctf))
                out.append(row)
            yield out
            if len(records) < size:
                return
            last = records[-1]
            after_order = order
            after = tuple(self._value(last.get(c), fields.get(c)) for c in order)

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        fields = self._known([cursor_field], "reading")
        where = [f"{cursor_field} != null"]
        if request.null_cursor is not None:
            return None
        soql = self._select([cursor_field], where, [cursor_field], 1, descending=True)
        for page in self._query(soql):
            for record in page:
                return self._value(record.get(cursor_field), fields[cursor_field])
        return None

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        wanted = list(dict.fromkeys([*key, *columns]))
        self._ids = {}  # the Ids kept are those of the batch being written now
        return [{c: r.get(c) for c in wanted} for r in self._find(key, keys, wanted)]

    def _find(self, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
              columns: Sequence[str]) -> list[Record]:
        """Records whose key fields hold one of `keys` (as Salesforce compares: text without
        regard to case), with `Id`; the key values in them are the ones asked for. Their Ids
        are kept for the update or delete that follows."""
        if not keys:
            return []
        key = list(key)
        fields = self._known([*key, *columns], "looking up")
        asked: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for values in keys:
            asked.setdefault(self._normal(key, values), tuple(values))
        selected = list(dict.fromkeys(["Id", *key, *columns]))
        out: list[Record] = []
        for where in self._key_chunks(key, list(asked.values())):
            soql = self._select(selected, [where])
            for page in self._query(soql):
                for record in page:
                    normal = self._normal(key, [self._value(record.get(k), fields[k])
                                                for k in key])
                    original = asked.get(normal)
                    if original is None:
                        continue
                    self._ids.setdefault(normal, [])
                    if record["Id"] not in self._ids[normal]:
                        self._ids[normal].append(str(record["Id"]))
                    row = {c: self._value(record.get(c), fields.get(c)) for c in selected}
                    out.append({**row, **dict(zip(key, original, strict=True))})
        return out

    def _key_chunks(self, key: Sequence[str], keys: list[tuple[Any, ...]]) -> Iterator[str]:
        """WHERE clauses each matching up to LOOKUP_CHUNK keys, short enough for a URL."""

        def one(values: tuple[Any, ...]) -> str:
            return " AND ".join(self._condition(k, "=", v)
                                for k, v in zip(key, values, strict=True))

        def clause(chunk: list[tuple[Any, ...]]) -> str:
            if len(key) == 1:
                present = [v[0] for v in chunk if v[0] is not None]
                kind = self._fields()[key[0]].kind
                parts = []
                if present:
                    parts.append(f"{key[0]} IN ("
                                 + ", ".join(soql_value(v, kind) for v in present) + ")")
                if len(present) < len(chunk):
                    parts.append(f"{key[0]} = null")
                return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
            return "(" + " OR ".join(f"({one(v)})" for v in chunk) + ")"

        chunk: list[tuple[Any, ...]] = []
        size = 0
        for values in keys:
            share = len(quote(one(values))) + 4
            if chunk and (len(chunk) >= LOOKUP_CHUNK or size + share > LOOKUP_WHERE_CHARS):
                yield clause(chunk)
                chunk, size = [], 0
            chunk.append(values)
            size += share
        if chunk:
            yield clause(chunk)

    # -- deletes the org reports ------------------------------------------------------------
    def read_deletes(self, request: ReadRequest) -> Iterator[list[Record]] | None:
        ctf = request.cursor_field
        if ctf is None or request.lower is None:
            return None
        if self._known([ctf], "reading deletes of")[ctf].kind != "datetime":
            return None  # deletes are stamped in time; a cursor of another kind cannot say
        moment = self._floor(request.lower)
        if not isinstance(moment, datetime):
            return None
        now = datetime.now(UTC).replace(microsecond=0)
        if moment < now - DELETES_KEPT:
            return None
        # a delete stamps SystemModstamp, never before the change field: reading from the
        # cursor's instant on reports every delete since it (the window's start must be over
        # a minute before its end)
        start = min(moment, now - timedelta(minutes=2))
        found = self._json("reading deletes of", "GET", f"/sobjects/{quote(self.name)}/deleted/",
                           params={"start": _soql_instant(start),
                                   "end": _soql_instant(now + timedelta(minutes=1))})
        earliest = _instant(str(found.get("earliestDateAvailable") or ""))
        if earliest is not None and earliest > start:
            return None  # the recycle bin was emptied since: some deletes are gone
        ids = [str(d["id"]) for d in found.get("deletedRecords") or []]
        columns = [c for c in request.columns if c != CURSOR_COLUMN]
        if not ids:
            return iter([])
        if list(columns) == ["Id"]:
            rows: list[Record] = [{"Id": i} for i in ids]
        else:
            held = {str(r["Id"]): r for r in self.read_deleted(columns, since=start)}
            if any(i not in held for i in ids):
                return None  # a record deleted for good: its key is not known any more
            rows = [held[i] for i in ids]
        size = max(1, int(request.batch_size))
        return iter([rows[i : i + size] for i in range(0, len(rows), size)])

    def read_deleted(self, columns: Sequence[str], since: datetime | None = None
                     ) -> list[Record]:
        """Records deleted (in the recycle bin) since an instant, by queryAll on IsDeleted:
        their `columns` (a key, say) as they were, oldest first."""
        fields = self._known([*columns, "SystemModstamp"], "reading deletes of")
        where = ["IsDeleted = true"]
        if since is not None:
            where.append(self._condition("SystemModstamp", ">=", self._floor(since)))
        selected = list(dict.fromkeys(["Id", *columns]))
        soql = self._select(selected, where, ["SystemModstamp", "Id"])
        return [{c: self._value(r.get(c), fields.get(c)) for c in selected}
                for page in self._query(soql, all_rows=True) for r in page]

    def deleted_ids(self, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
        """(Id, deleted at) of the records deleted between two instants (getDeleted)."""
        found = self._json("reading deletes of", "GET",
                           f"/sobjects/{quote(self.name)}/deleted/",
                           params={"start": _soql_instant(start), "end": _soql_instant(end)})
        return [(str(d["id"]), _instant(str(d["deletedDate"])) or d["deletedDate"])
                for d in found.get("deletedRecords") or []]

    # -- write ------------------------------------------------------------------------------
    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        raise ConnectorError(f"{self.display}: the org has no sObject {self.name}; create it "
                             "in Salesforce Setup first")

    def _payload(self, row: Record) -> Record:
        """What a write sends: the row's writable fields (never Id, never read-only)."""
        fields = self._fields()
        out: Record = {}
        for name, value in row.items():
            if name in (CURSOR_COLUMN, "Id"):
                continue
            info = fields.get(name)
            if info is None:
                raise ConnectorError(f"writing {self.display}: no field {name}; fields: "
                                     f"{', '.join(fields)}")
            if info.read_only:
                continue
            out[name] = value
        return out

    def _external_key(self, key: Sequence[str], operation: str) -> str:
        fields = self._fields()
        if len(key) == 1 and key[0] in self._external:
            return key[0]
        named = ", ".join(key) or "none"
        external = ", ".join(sorted(self._external)) or "none"
        unknown = [k for k in key if k not in fields]
        why = f"no field {', '.join(unknown)}" if unknown else "not one External ID field"
        raise ConnectorError(
            f"{operation} into {self.display} matches by an External ID field (so a repeated "
            f"write lands on the same record): matchKey {named} is {why}; External ID "
            f"fields of {self.name}: {external}")

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        key = list(key)
        self._fields()
        if not rows:
            return WriteResult()
        if operation in ("insert", "upsert"):
            external = self._external_key(key, operation)
            self._settle_jobs()
            return self._upsert(external, rows)
        self._known(key, f"{operation} of")
        targets = self._targets(key, rows)
        self._settle_jobs()
        if operation == "delete":
            return self._delete(targets)
        return self._update(rows, targets)

    def _targets(self, key: Sequence[str], rows: Sequence[Record]) -> list[tuple[int, str]]:
        """(row index, Id) of the records each row's key finds: the Ids its lookup found,
        else a lookup now."""
        if list(key) == ["Id"]:
            return [(i, str(r["Id"])) for i, r in enumerate(rows) if r.get("Id")]
        normals = [self._normal(key, [r.get(k) for k in key]) for r in rows]
        unknown = [tuple(rows[i].get(k) for k in key) for i, n in enumerate(normals)
                   if n not in self._ids]
        if unknown:
            self._find(key, unknown, [])
        out = []
        for i, normal in enumerate(normals):
            for record_id in self._ids.pop(normal, []):
                out.append((i, record_id))
        return out

    # -- sObject Collections ------------------------------------------------------------------
    def _records(self, rows: Sequence[Record], ids: Sequence[str | None] = ()) -> list[Record]:
        out = []
        for i, row in enumerate(rows):
            record: Record = {"attributes": {"type": self.name}}
            if ids:
                record["id"] = ids[i]
            record.update({k: wire(v) for k, v in self._payload(row).items()})
            out.append(record)
        return out

    def _upsert(self, external: str, rows: Sequence[Record]) -> WriteResult:
        if len(rows) >= self.settings.bulk_threshold:
            written, refused, created = self._bulk("upsert", rows, [], external)
            return WriteResult(written=len(written), refused=sorted(
                refused.values(), key=lambda r: r.index), created_ids=created)
        result = WriteResult()
        for start in range(0, len(rows), COLLECTION_LIMIT):
            chunk = rows[start:start + COLLECTION_LIMIT]
            missing = [i for i, r in enumerate(chunk) if r.get(external) is None]
            for i in missing:
                result.refused.append(Refusal(start + i, "MISSING_EXTERNAL_ID",
                                              f"no value for the External ID field {external}"))
            sent = [i for i in range(len(chunk)) if i not in set(missing)]
            if not sent:
                continue
            answers = self._json(
                "writing", "PATCH", f"/composite/sobjects/{quote(self.name)}/{quote(external)}",
                json={"allOrNone": False, "records": self._records([chunk[i] for i in sent])},
                write=True)
            for j, answer in enumerate(answers):
                index = start + sent[j]
                if answer.get("success"):
                    result.written += 1
                    if answer.get("created") and answer.get("id"):
                        result.created_ids[index] = answer["id"]
                else:
                    result.refused.append(self._refusal(index, answer))
        result.refused.sort(key=lambda r: r.index)
        return result

    def _update(self, rows: Sequence[Record], targets: list[tuple[int, str]]) -> WriteResult:
        if len(targets) >= self.settings.bulk_threshold:
            return self._bulk_rows("update", [rows[i] for i, _ in targets], targets)
        result = WriteResult()
        outcome: dict[int, Refusal | None] = {}
        for start in range(0, len(targets), COLLECTION_LIMIT):
            chunk = targets[start:start + COLLECTION_LIMIT]
            answers = self._json(
                "writing", "PATCH", "/composite/sobjects",
                json={"allOrNone": False, "records": self._records(
                    [rows[i] for i, _ in chunk], [rid for _, rid in chunk])}, write=True)
            for (index, _), answer in zip(chunk, answers, strict=True):
                self._settle(outcome, index, answer)
        return self._outcome(outcome, result)

    def _delete(self, targets: list[tuple[int, str]]) -> WriteResult:
        if len(targets) >= self.settings.bulk_threshold:
            return self._bulk_rows("delete", [{} for _ in targets], targets)
        result = WriteResult()
        outcome: dict[int, Refusal | None] = {}
        for start in range(0, len(targets), COLLECTION_LIMIT):
            chunk = targets[start:start + COLLECTION_LIMIT]
            answers = self._json("deleting from", "DELETE", "/composite/sobjects",
                                 params={"ids": ",".join(rid for _, rid in chunk),
                                         "allOrNone": "false"}, write=True)
            for (index, _), answer in zip(chunk, answers, strict=True):
                self._settle(outcome, index, answer)
        return self._outcome(outcome, result)

    @staticmethod
    def _gone(code: str) -> bool:
        """Codes of a record deleted meanwhile: nothing to update or delete, no refusal."""
        return code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND")

    def _settle(self, outcome: dict[int, Refusal | None], index: int,
                answer: Mapping[str, Any]) -> None:
        """One record's answer into its row's outcome (None: written; absent: not)."""
        if answer.get("success"):
            if not isinstance(outcome.get(index), Refusal):
                outcome[index] = None
            return
        refusal = self._refusal(index, answer)
        if not self._gone(refusal.code):
            outcome[index] = refusal

    @staticmethod
    def _outcome(outcome: dict[int, Refusal | None], result: WriteResult) -> WriteResult:
        result.written += sum(1 for r in outcome.values() if r is None)
        result.refused.extend(r for _, r in sorted(outcome.items()) if r is not None)
        return result

    def _bulk_rows(self, operation: str, rows: Sequence[Record],
                   targets: list[tuple[int, str]]) -> WriteResult:
        """An update or delete of `targets` as one ingest job, as a result over the rows."""
        written, refused, _ = self._bulk(operation, rows, [t for _, t in targets], None)
        outcome: dict[int, Refusal | None] = {}
        for j, (index, _) in enumerate(targets):
            if j in refused:
                outcome[index] = Refusal(index, refused[j].code, refused[j].message)
            elif j in written and not isinstance(outcome.get(index), Refusal):
                outcome[index] = None
        return self._outcome(outcome, WriteResult())

    @staticmethod
    def _refusal(index: int, answer: Mapping[str, Any]) -> Refusal:
        errors = answer.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], Mapping) else {}
        code = str(first.get("statusCode") or first.get("errorCode") or "REFUSED")
        message = str(first.get("message") or "refused")
        if first.get("fields"):
            message += f" (fields: {', '.join(map(str, first['fields']))})"
        return Refusal(index, code, message)

    # -- Bulk API 2.0 -------------------------------------------------------------------------
    def _settle_jobs(self) -> None:
        """Once per endpoint, before its first write: wait for ingest jobs on this object
        that are still being processed (a run killed after closing one), so none of them
        lands after, and over, what this run writes."""
        if self._jobs_settled:
            return
        deadline = time.monotonic() + self.settings.bulk_timeout_seconds
        while True:
            busy = []
            page = self._json("listing ingest jobs of", "GET", "/jobs/ingest",
                              params={"jobType": "V2Ingest"})
            while True:
                busy += [j["id"] for j in page.get("records") or []
                         if j.get("object") == self.name
                         and j.get("state") in ("UploadComplete", "InProgress")]
                following = page.get("nextRecordsUrl")
                if page.get("done", True) or not following:
                    break
                page = self._json("listing ingest jobs of", "GET", str(following))
            if not busy:
                break
            if time.monotonic() > deadline:
                raise TransientError(f"{self.display}: ingest jobs {', '.join(busy)} are still "
                                     "being processed; try again later")
            self.client.sleep(self.settings.bulk_poll_seconds)
        self._jobs_settled = True

    def _bulk(self, operation: str, rows: Sequence[Record], ids: Sequence[str],
              external: str | None) -> tuple[set[int], dict[int, Refusal], dict[int, Any]]:
        """One ingest job over `rows` (with `ids` for update and delete): the indexes
        written, those refused (Salesforce's code and message) and the Ids created. A record
        deleted meanwhile is neither. Unprocessed records make it a TransientError."""
        payloads = [self._payload(r) for r in rows] if operation != "delete" else [
            {} for _ in rows]
        columns = [] if operation == "upsert" else ["Id"]
        columns += list(dict.fromkeys(n for p in payloads for n in p))
        if external is not None and external not in columns:
            columns.insert(0, external)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        identity: dict[tuple[Any, ...], int] = {}
        refused: dict[int, Refusal] = {}
        for i, payload in enumerate(payloads):
            if external is not None:
                value = payload.get(external)
                if value is None:
                    refused[i] = Refusal(i, "MISSING_EXTERNAL_ID",
                                         f"no value for the External ID field {external}")
                    continue
                identity[self._normal([external], [value])] = i
            else:
                identity[(ids[i],)] = i
                payload = {**payload, "Id": ids[i]}
            writer.writerow([csv_text(payload[c]) if c in payload else "" for c in columns])
        written: set[int] = set()
        created: dict[int, Any] = {}
        if not identity:
            return written, refused, created
        spec: dict[str, Any] = {"object": self.name, "operation": operation,
                                "contentType": "CSV", "lineEnding": "LF"}
        if external is not None:
            spec["externalIdFieldName"] = external
        job = self._json("writing", "POST", "/jobs/ingest", json=spec, write=True)
        job_id = str(job["id"])
        self.bulk_jobs.append(job_id)
        self._text("writing", "PUT", f"/jobs/ingest/{job_id}/batches",
                   content=text.getvalue().encode("utf-8"),
                   headers={"Content-Type": "text/csv"})
        self._json("writing", "PATCH", f"/jobs/ingest/{job_id}",
                   json={"state": "UploadComplete"}, write=True)
        state = self._wait_job(job_id)

        def results(kind: str) -> list[dict[str, str]]:
            body = self._text("reading results of", "GET", f"/jobs/ingest/{job_id}/{kind}/")
            return list(csv.DictReader(io.StringIO(body)))

        def index_of(row: Mapping[str, str]) -> int | None:
            if external is not None:
                return identity.get(self._normal([external], [row.get(external)]))
            return identity.get((row.get("Id") or row.get("sf__Id") or "",))

        seen: set[int] = set()
        for row in results("successfulResults"):
            i = index_of(row)
            if i is not None and i not in seen:
                seen.add(i)
                written.add(i)
                if row.get("sf__Created") == "true" and row.get("sf__Id"):
                    created[i] = row["sf__Id"]
        for row in results("failedResults"):
            i = index_of(row)
            if i is None or i in seen:
                continue
            seen.add(i)
            code, _, message = (row.get("sf__Error") or "REFUSED").partition(":")
            if external is None and self._gone(code):
                continue  # deleted meanwhile: nothing to update or delete
            refused[i] = Refusal(i, code or "REFUSED", message or "refused")
        unprocessed = len(identity) - len(seen)
        if unprocessed or state != "JobComplete":
            raise TransientError(f"{self.display}: Bulk API job {job_id} ended {state} with "
                                 f"{unprocessed} records unprocessed; the batch is written "
                                 "again")
        return written, refused, created

    def _wait_job(self, job_id: str) -> str:
        deadline = time.monotonic() + self.settings.bulk_timeout_seconds
        while True:
            info = self._json("waiting for", "GET", f"/jobs/ingest/{job_id}")
            state = str(info.get("state"))
            if state in TERMINAL:
                return state
            if time.monotonic() > deadline:
                raise TransientError(f"{self.display}: Bulk API job {job_id} still {state} "
                                     f"after {self.settings.bulk_timeout_seconds:g} s")
            self.client.sleep(self.settings.bulk_poll_seconds)

    # -- orchestration ------------------------------------------------------------------------
    def count(self) -> int | None:
        if not self.describe().exists:
            return None
        page = self._json("counting", "GET", "/query",
                          params={"q": f"SELECT COUNT() FROM {self.name}"})
        return int(page.get("totalSize") or 0)

    def change_token(self, filter: Any, cursor_field: str | None) -> Any:
        """[records, their largest change time]: any write stamps SystemModstamp."""
        cursor = cursor_field or "SystemModstamp"
        request = ReadRequest(columns=[cursor], order_by=[], batch_size=1)
        return [self.count(), self.high_water_mark(cursor, request)]
