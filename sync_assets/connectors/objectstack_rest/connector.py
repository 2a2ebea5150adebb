"""ObjectStack objects through the server's REST data API (`type: objectstack`, or a project's
`objectstack: {url: https://..., apiKey: ...}`), behind the connector contract.

What the server can and cannot do decides the capabilities (measured facts: client.py):

- No transactions: every write is applied when the server answers. Sync state lives in the
  project's state database, written around each acknowledged write, so every write here is
  idempotent by match key: records are looked up by key first, existing ones updated and
  only missing ones created; a create the server refuses as a duplicate of a unique field is
  looked up again and updated. Writes are not resent by the client after a failure that may
  have been applied (a timeout, a dropped connection, a 5xx but 503): the engine retries the
  batch, which looks the records up again.
- Filters are pushed down by translating the engine's parsed tree (`filters.FilterNode`) into
  ObjectQL JSON. Where the server's meaning is the engine's (text operators case-sensitive,
  `$ne`/`$nin`/`$notContains`/`$not` matching null, ...) the translation is exact. A condition
  the server cannot answer the same way (a `$field` comparison, a value of another type than
  the field's, a date that is not ISO 8601) is left out of the server's filter, which then
  selects a superset, and the whole filter is evaluated here on every record read
  (`evaluate_filter`): the records yielded are exactly the filter's.
- Reads are keyset-paged in `order_by` order (`sort=` the same fields, nulls first), resumed
  after the last record's values; the change-tracking value is the server's ISO-8601 text,
  which the server accepts back as a bound.
- Numbers: a field declaring `scale: 0` is an integer, one with a larger scale a decimal, any
  other number a float.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from ... import filters as objectql
from ...filters import And, Condition, FieldRef, FilterNode, Not, Or
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
from . import client as osc
from .settings import ObjectStackRestSettings

T = TypeVar("T")

#: keys per lookup call, and the longest URL-encoded filter a lookup sends
LOOKUP_CHUNK = 200
LOOKUP_FILTER_CHARS = 6000

_TEXT_TYPES = frozenset({
    "text", "textarea", "email", "url", "phone", "select", "radio", "lookup", "master_detail",
    "markdown", "html", "richtext", "password", "color", "code", "autonumber", "formula_text",
    "slug", "string", "id", "tree",
})
_NUMBER_TYPES = frozenset({"number", "currency", "percent", "rating", "slider"})
_JSON_TYPES = frozenset({"json", "object", "array", "location", "address", "file", "image",
                         "avatar", "attachment", "tags", "multiselect", "checkboxes", "vector"})
_KINDS = {"boolean": "boolean", "toggle": "boolean", "checkbox": "boolean", "date": "date",
          "datetime": "datetime", "time": "time"}
#: field types whose values the server computes
_COMPUTED_TYPES = frozenset({"formula", "summary", "rollup", "autonumber"})


def field_kind(meta: Mapping[str, Any]) -> str:
    """The portable kind of a field from its `/meta/object` entry."""
    kind = str(meta.get("type") or "")
    if meta.get("multiple") and kind in _TEXT_TYPES:
        return "json"  # several values: a list
    if kind in _TEXT_TYPES:
        return "text"
    if kind in _NUMBER_TYPES:
        scale = meta.get("scale")
        if isinstance(scale, int) and not isinstance(scale, bool):
            return "integer" if scale == 0 else "decimal"
        return "float"
    if kind in _JSON_TYPES:
        return "json"
    return _KINDS.get(kind, "unknown")


def wire(value: Any) -> Any:
    """A value as JSON for the server: instants in UTC ISO-8601 with milliseconds (naive ones
    are UTC), dates and times ISO, decimals as numbers."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [wire(v) for v in value]
    return str(value)


def _instant(text: str) -> datetime | None:
    """An ISO-8601 instant as an aware datetime (naive text is UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- filters: the engine's tree as the server's ObjectQL JSON ------------------------------
_MATCH_ALL: Any = None  # no condition: every record
_MATCH_NONE = {"id": {"$in": []}}

_VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "integer": (int, float), "decimal": (int, float), "float": (int, float),
    "boolean": (bool,), "date": (str,), "datetime": (str,), "time": (str,),
}
_OPERATORS = {"eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte",
              "contains": "$contains", "not_contains": "$notContains",
              "starts_with": "$startsWith", "ends_with": "$endsWith", "like": "$like"}


@dataclass(frozen=True)
class Translation:
    """A filter for the server and whether it is exactly the engine's (else a superset)."""

    where: Any
    exact: bool


def translate_filter(node: FilterNode | None, fields: Mapping[str, FieldInfo],
                     display: str = "the object") -> Translation:
    """The engine's filter as ObjectQL JSON for the server. Conditions the server would answer
    differently are left out (`exact` False: the server's filter selects a superset). A field
    the object does not have is a ConnectorError, as the SQL connector reports it."""
    if node is None:
        return Translation(_MATCH_ALL, True)
    for name in sorted(objectql.filter_fields(node)):
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConnectorError(f"source.filters on {display}: unknown field '{name}'; "
                                 f"known fields: {known}")
    where, exact = _translate(node, fields)
    return Translation(where, exact)


def _translate(node: FilterNode, fields: Mapping[str, FieldInfo]) -> tuple[Any, bool]:
    if isinstance(node, Not):
        inner, exact = _translate(node.item, fields)
        if not exact:
            return _MATCH_ALL, False  # the negation of a superset is no superset
        if inner is _MATCH_ALL:
            return _MATCH_NONE, True
        if inner == _MATCH_NONE:
            return _MATCH_ALL, True
        return {"$not": inner}, True
    if isinstance(node, And):
        parts, exact = [], True
        for item in node.items:
            where, item_exact = _translate(item, fields)
            exact = exact and item_exact
            if where == _MATCH_NONE:
                return _MATCH_NONE, exact
            if where is not _MATCH_ALL:
                parts.append(where)
        if not parts:
            return _MATCH_ALL, exact
        return (parts[0] if len(parts) == 1 else {"$and": parts}), exact
    if isinstance(node, Or):
        if not node.items:
            return _MATCH_NONE, True
        parts, exact = [], True
        for item in node.items:
            where, item_exact = _translate(item, fields)
            exact = exact and item_exact
            if where is _MATCH_ALL:
                return _MATCH_ALL, exact
            if where != _MATCH_NONE:
                parts.append(where)
        if not parts:
            return _MATCH_NONE, exact
        return (parts[0] if len(parts) == 1 else {"$or": parts}), exact
    return _condition(node, fields[node.field])


def _server_value(value: Any, info: FieldInfo) -> tuple[Any, bool]:
    """(the value as the server compares it with this field, whether that is exact)."""
    allowed = _VALUE_TYPES.get(info.kind)
    if allowed is None or value is None or isinstance(value, FieldRef):
        return value, False
    if isinstance(value, bool) != (info.kind == "boolean") or not isinstance(value, allowed):
        return value, False  # the engine never matches across types; the server coerces
    if info.kind == "datetime":
        moment = _instant(value)
        if moment is None or moment.microsecond % 1000:
            return value, False  # not an instant, or finer than the server's milliseconds
        return wire(moment), True
    if info.kind == "date":
        try:
            return date.fromisoformat(value).isoformat(), True
        except ValueError:
            return value, False
    if info.kind == "time":
        return value, False  # stored text of unknown form: compared here
    return value, True


def _condition(cond: Condition, info: FieldInfo) -> tuple[Any, bool]:
    name, op, value = cond.field, cond.op, cond.value
    if op == "is_null":
        return {name: {"$null": True}}, True
    if op == "is_not_null":
        return {name: {"$null": False}}, True
    if op in ("is_empty", "is_not_empty"):
        if info.kind == "json":
            return _MATCH_ALL, False  # [] is empty too: compared here
        empty: Any = {name: {"$null": True}}
        if info.kind in ("text", "unknown"):
            empty = {"$or": [empty, {name: ""}]}
        return (empty if op == "is_empty" else {"$not": empty}), True
    if op in ("in", "nin"):
        members = value if isinstance(value, tuple) else ()
        present = []
        for member in members:
            if member is None:
                continue
            converted, exact = _server_value(member, info)
            if not exact:
                return _MATCH_ALL, False
            present.append(converted)
        parts: list[Any] = [{name: {"$in": present}}] if present else []
        if any(m is None for m in members):
            parts.append({name: {"$null": True}})
        inside: Any = (_MATCH_NONE if not parts else parts[0] if len(parts) == 1
                       else {"$or": parts})
        if op == "in":
            return inside, True
        if inside == _MATCH_NONE:
            return _MATCH_ALL, True
        if len(parts) == 1 and present:
            return {name: {"$nin": present}}, True  # $nin matches null, as nin does
        return {"$not": inside}, True
    if op == "between":
        bounds = value if isinstance(value, tuple) else ()
        converted = [_server_value(b, info) for b in bounds]
        if len(converted) != 2 or not all(exact for _, exact in converted):
            return _MATCH_ALL, False
        return {name: {"$gte": converted[0][0], "$lte": converted[1][0]}}, True
    if op in objectql.TEXT_OPS:
        if info.kind not in ("text",) or not isinstance(value, str):
            return _MATCH_ALL, False
        return {name: {_OPERATORS[op]: value}}, True
    # eq, ne and the orderings
    server_value, exact = _server_value(value, info)
    if not exact:
        return _MATCH_ALL, False
    return {name: {_OPERATORS[op]: server_value}}, True


def _all(*parts: Any) -> Any:
    """The conjunction of server filters (None: no condition)."""
    present = [p for p in parts if p is not _MATCH_ALL]
    if not present:
        return _MATCH_ALL
    return present[0] if len(present) == 1 else {"$and": present}


def _keyset_after(order: Sequence[str], after: Sequence[Any]) -> Any:
    """The records after `after` in ascending `order` (nulls first, as the server sorts)."""
    alternatives = []
    for i, name in enumerate(order):
        equal = [_equal(order[j], after[j]) for j in range(i)]
        value = after[i]
        greater = {name: {"$null": False}} if value is None else {name: {"$gt": wire(value)}}
        alternatives.append(_all(*equal, greater))
    return alternatives[0] if len(alternatives) == 1 else {"$or": alternatives}


def _equal(name: str, value: Any) -> Any:
    return {name: {"$null": True}} if value is None else {name: {"$eq": wire(value)}}


# -- clients: one per server and key in a process --------------------------------------------
_CLIENTS: dict[tuple[str, str, float, int], osc.ObjectStackClient] = {}
_CLIENTS_LOCK = threading.Lock()


def get_client(url: str, api_key: str, timeout: float = 30.0,
               max_retries: int = 5) -> osc.ObjectStackClient:
    key = (url, api_key, timeout, max_retries)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = osc.ObjectStackClient(url, api_key, timeout=timeout, max_retries=max_retries,
                                          retry_ambiguous=False)
            _CLIENTS[key] = found
        return found


def close_clients() -> None:
    with _CLIENTS_LOCK:
        for found in _CLIENTS.values():
            found.close()
        _CLIENTS.clear()


def open_rest(settings: ObjectStackRestSettings, resource: str,
              display: str) -> ObjectStackRestTable:
    """The endpoint for one object of the server named by `settings`."""
    client = get_client(settings.url, settings.api_key.get_secret_value(), settings.timeout,
                        settings.max_retries)
    return ObjectStackRestTable(client, resource, display)


# -- the endpoint ----------------------------------------------------------------------------
class ObjectStackRestTable(Endpoint):
    """One object of an ObjectStack server, through its REST data API."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=True, ordered_reads=True, shards=False,
        native_upsert=True, max_batch_size=None, hosts_state=False, creates_resource=False,
        concurrent_writers=1, idempotent_inserts=False,
    )

    def __init__(self, client: osc.ObjectStackClient, name: str,
                 display: str | None = None) -> None:
        self.client = client
        self.name = name
        self.display = display or f"objectstack.{name}"
        self.api_calls = 0
        self._desc: Description | None = None

    def usage(self) -> ApiUsage:
        return ApiUsage(calls=self.api_calls)

    # -- calls ------------------------------------------------------------------------------
    def _call(self, doing: str, fn: Callable[..., T], *args: Any, write: bool = False,
              **kwargs: Any) -> T:
        """One client call, counted, its errors as the contract's kinds."""
        before = self.client.calls
        try:
            return fn(*args, **kwargs)
        except osc.ObjectStackError as exc:
            raise self._error(exc, doing, write=write) from None
        finally:
            self.api_calls += self.client.calls - before

    def _raw(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One client call, counted, its errors left to the caller."""
        before = self.client.calls
        try:
            return fn(*args, **kwargs)
        finally:
            self.api_calls += self.client.calls - before

    def _error(self, exc: osc.ObjectStackError, doing: str, *, write: bool) -> ConnectorError:
        """A client error as the contract's kind: a passing fault, the batch refused (a write
        the server refused as a whole), or a failure of the run (credentials, a missing
        object, a read refused). Messages name the server, never the key."""
        if isinstance(exc, osc.TransientError):
            return TransientError(f"{doing} {self.display}: {exc.message}",
                                  retry_after=exc.retry_after)
        if isinstance(exc, osc.AuthError):
            return ConnectorError(exc.message)
        if isinstance(exc, osc.RequestRefused) and write:
            return BatchRefused(f"{exc.code or 'REFUSED'}: {_reason(exc)}")
        return ConnectorError(f"{doing} {self.display} failed: {exc.message}")

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        if self._desc is not None and not refresh:
            return self._desc
        try:
            meta = self._raw(self.client.describe, self.name)
        except osc.NotFoundError:
            return Description(fields={}, exists=False)
        except osc.ObjectStackError as exc:
            raise self._error(exc, "describing", write=False) from None
        fields: dict[str, FieldInfo] = {
            "id": FieldInfo("id", "id", nullable=False, kind="text", read_only=False)}
        uniques = []
        for name, entry in meta.items():
            entry = entry if isinstance(entry, Mapping) else {}
            kind = str(entry.get("type") or "")
            read_only = bool(entry.get("readonly")) or kind in _COMPUTED_TYPES
            fields[name] = FieldInfo(name, kind or None, nullable=not entry.get("required"),
                                     kind=field_kind(entry), read_only=read_only)
            if entry.get("unique"):
                uniques.append((name,))
        self._desc = Description(fields=fields, primary_key=("id",),
                                 unique_keys=tuple(uniques))
        return self._desc

    def _fields(self) -> Mapping[str, FieldInfo]:
        desc = self.describe()
        if not desc.exists:
            raise ConnectorError(f"object {self.name} does not exist on the server "
                                 f"{self.client.base_url}; define it in the stack")
        return desc.fields

    def _known(self, names: Sequence[str], doing: str) -> None:
        fields = self._fields()
        missing = [n for n in names if n not in fields]
        if missing:
            raise ConnectorError(f"{doing} {self.display}: no field {', '.join(missing)}; "
                                 f"fields: {', '.join(fields)}")

    def is_empty(self) -> bool:
        if not self.describe().exists:
            return True
        return not self._call("reading", self.client.list, self.name, fields=["id"], limit=1)

    # -- read -------------------------------------------------------------------------------
    def _where(self, request: ReadRequest) -> tuple[Any, Translation]:
        """The server's filter for a request (filter, bounds, nulls) and the translation."""
        fields = self._fields()
        plan = translate_filter(request.filter, fields, self.display)
        parts = [plan.where]
        if request.null_cursor is not None:
            self._known([request.null_cursor], "reading")
            parts.append({request.null_cursor: {"$null": True}})
        ctf = request.cursor_field
        if ctf is not None:
            self._known([ctf], "reading")
            parts.append({ctf: {"$null": False}})
            if request.lower is not None:
                parts.append({ctf: {"$gte": wire(request.lower)}})
            if request.upper is not None:
                parts.append({ctf: {"$lte": wire(request.upper)}})
        return _all(*parts), plan

    def _local(self, request: ReadRequest, plan: Translation) -> Callable[[Record], bool]:
        """What the server's filter left to this side: the whole filter, on instants."""
        if plan.exact or request.filter is None:
            return lambda _record: True
        fields = self._fields()
        instants = [n for n in objectql.filter_fields(request.filter)
                    if fields[n].kind == "datetime"]
        node = request.filter

        def keep(record: Record) -> bool:
            view = dict(record)
            for name in instants:
                if isinstance(view.get(name), str):
                    view[name] = _instant(view[name]) or view[name]
            return objectql.evaluate_filter(node, view)

        return keep

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        where, plan = self._where(request)
        keep = self._local(request, plan)
        order = list(request.order_by) or ["id"]
        if "id" not in order:
            order.append("id")  # a total order: ids are unique
        wanted = list(request.columns)
        extra = list(objectql.filter_fields(request.filter)) if not plan.exact else []
        fields = list(dict.fromkeys([*wanted, *order, *extra,
                                     *([request.cursor_field] if request.cursor_field else [])]))
        self._known(fields, "reading")
        ctf = request.cursor_field
        keyset = None
        if request.after is not None:  # the order_by values of the last record read
            keyset = _keyset_after(list(request.order_by) or ["id"], tuple(request.after))
        size = max(1, int(request.batch_size))
        while True:
            page = self._call("reading", self.client.list, self.name,
                              filter=_all(where, keyset), fields=fields, sort=order, limit=size)
            if not page:
                return
            out = []
            for record in page:
                if not keep(record):
                    continue
                row = {c: record.get(c) for c in wanted}
                if ctf is not None:
                    row[CURSOR_COLUMN] = record.get(ctf)
                out.append(row)
            if out:
                yield out
            if len(page) < size:
                return
            keyset = _keyset_after(order, tuple(page[-1].get(c) for c in order))

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        request = ReadRequest(**{**request.__dict__, "cursor_field": cursor_field,
                                 "upper": None})
        where, plan = self._where(request)
        keep = self._local(request, plan)
        fields = list(dict.fromkeys([cursor_field, "id", *(
            objectql.filter_fields(request.filter) if not plan.exact else [])]))
        offset, size = 0, 1 if plan.exact else 500
        while True:  # descending: the first record the filter keeps holds the largest value
            page = self._call("reading", self.client.list, self.name, filter=where,
                              fields=fields, sort=f"-{cursor_field}", limit=size, offset=offset)
            for record in page:
                if keep(record):
                    return record.get(cursor_field)
            if len(page) < size:
                return None
            offset += size

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        wanted = list(dict.fromkeys([*key, *columns]))
        return [{c: record.get(c) for c in wanted}
                for record in self._find(key, keys, wanted)]

    def _find(self, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
              columns: Sequence[str]) -> list[Record]:
        """Records whose key fields hold one of `keys`, compared exactly (as the server's
        $eq/$in do: case-sensitive text). The key values in the records are the ones asked
        for (an integer key asked for finds the text the server stores)."""
        if not keys:
            return []
        key = list(key)
        self._known([*key, *columns], "looking up")
        fields = self._fields()
        asked: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for values in keys:
            asked.setdefault(self._normal(key, values, fields), tuple(values))
        wanted = list(dict.fromkeys([*key, "id", "updated_at", *columns]))
        wanted = [w for w in wanted if w in fields]
        out: list[Record] = []
        for chunk in self._key_chunks(key, list(asked), fields):
            found = self._call("looking up records of", self.client.list, self.name,
                               filter=chunk, fields=wanted, limit=None)
            for record in found:
                normal = self._normal(key, tuple(record.get(k) for k in key), fields)
                original = asked.get(normal)
                if original is None:
                    continue  # the server matched what this side would not: not this key
                out.append({**record, **dict(zip(key, original, strict=True))})
        return out

    @staticmethod
    def _normal(key: Sequence[str], values: Sequence[Any],
                fields: Mapping[str, FieldInfo]) -> tuple[Any, ...]:
        """Key values as the server holds them: text fields hold text, instants are UTC."""
        out = []
        for name, value in zip(key, values, strict=True):
            value = wire(value)
            if fields[name].kind == "text" and isinstance(value, int | float) \
                    and not isinstance(value, bool):
                value = str(value)
            elif fields[name].kind == "datetime" and isinstance(value, str):
                moment = _instant(value)
                value = wire(moment) if moment is not None else value
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            out.append(value)
        return tuple(out)

    @staticmethod
    def _key_chunks(key: Sequence[str], keys: list[tuple[Any, ...]],
                    fields: Mapping[str, FieldInfo]) -> Iterator[Any]:
        """Filters each matching up to LOOKUP_CHUNK keys, short enough for a URL."""

        def condition(chunk: list[tuple[Any, ...]]) -> Any:
            if len(key) == 1:
                present = [v[0] for v in chunk if v[0] is not None]
                parts: list[Any] = [{key[0]: {"$in": present}}] if present else []
                if len(present) < len(chunk):
                    parts.append({key[0]: {"$null": True}})
                return parts[0] if len(parts) == 1 else {"$or": parts}
            alternatives = [_all(*[_equal(k, v) for k, v in zip(key, values, strict=True)])
                            for values in chunk]
            return alternatives[0] if len(alternatives) == 1 else {"$or": alternatives}

        def cost(values: tuple[Any, ...]) -> int:  # its share of the URL-encoded filter
            part = (values[0] if len(key) == 1
                    else _all(*[_equal(k, v) for k, v in zip(key, values, strict=True)]))
            return len(quote(json.dumps(part, separators=(",", ":")))) + 3

        chunk: list[tuple[Any, ...]] = []
        size = 0
        for values in keys:
            share = cost(values)
            if chunk and (len(chunk) >= LOOKUP_CHUNK or size + share > LOOKUP_FILTER_CHARS):
                yield condition(chunk)
                chunk, size = [], 0
            chunk.append(values)
            size += share
        if chunk:
            yield condition(chunk)

    def lookup_table(self, table: str, key_field: str, value_field: str) -> dict[Any, Any]:
        """A whole key -> value table from another object of the same server."""
        other = ObjectStackRestTable(self.client, table, f"objectstack.{table}")
        request = ReadRequest(columns=[key_field, value_field], order_by=["id"],
                              batch_size=5000)
        table_rows = [r for page in other.read_batches(request) for r in page]
        self.api_calls += other.api_calls
        return {r[key_field]: r[value_field] for r in table_rows}

    # -- write ------------------------------------------------------------------------------
    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        raise ConnectorError(f"object {self.name} does not exist on the server "
                             f"{self.client.base_url}; define it in the stack")

    def _payload(self, row: Record, *, with_id: bool) -> Record:
        """What a write sends: never a read-only field; `id` only to create a record."""
        fields = self._fields()
        out = {}
        for name, value in row.items():
            info = fields.get(name)
            if (info is not None and info.read_only) or name == CURSOR_COLUMN:
                continue
            if name == "id":
                if with_id and value is not None:
                    out["id"] = str(wire(value))
                continue
            out[name] = wire(value)
        return out

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        self._fields()
        key = list(key)
        if not rows:
            return WriteResult()
        if operation == "delete":
            return self._delete(key, rows)
        if key == ["id"]:
            return self._write_by_id(operation, rows)
        if not key:
            if operation != "insert":
                raise ConnectorError(f"{operation} on {self.display} needs a match key")
            return self._create(rows, list(range(len(rows))), WriteResult())
        self._known(key, "writing")
        found = self._ids(key, rows)
        result = WriteResult()
        updates = [(i, record_id) for i, ids in found.items() for record_id in ids]
        missing = [i for i in range(len(rows)) if i not in found]
        if updates:
            self._update(rows, updates, result)
        if missing and operation != "update":
            self._create(rows, missing, result, key=key)
        return result

    def _ids(self, key: Sequence[str], rows: Sequence[Record]) -> dict[int, list[str]]:
        """The ids of the records each row's key finds (row index -> ids)."""
        fields = self._fields()
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            values = tuple(row.get(k) for k in key)
            by_key.setdefault(self._normal(key, values, fields), []).append(i)
        keys = [tuple(rows[idx[0]].get(k) for k in key) for idx in by_key.values()]
        out: dict[int, list[str]] = {}
        for record in self._find(key, keys, ["id"]):
            normal = self._normal(key, tuple(record.get(k) for k in key), fields)
            for i in by_key.get(normal, []):
                out.setdefault(i, []).append(str(record["id"]))
        return out

    def _update(self, rows: Sequence[Record], targets: Sequence[tuple[int, str]],
                result: WriteResult) -> None:
        """Batch-update records by id; a row counts once however many records it updates."""
        records = [{**self._payload(rows[i], with_id=False), "id": rid} for i, rid in targets]
        outcomes = self._call("writing", self.client.batch, self.name, "update", records,
                              write=True)
        written: set[int] = set()
        refused: dict[int, Refusal] = {}
        for outcome in outcomes:
            row_index = targets[outcome.index][0]
            if outcome.ok:
                written.add(row_index)
            elif outcome.code != "RECORD_NOT_FOUND":  # deleted meanwhile: nothing to update
                refused.setdefault(row_index, Refusal(row_index, outcome.code or "REFUSED",
                                                      outcome.message or "refused"))
        result.written += len(written - set(refused))
        result.refused.extend(r for i, r in sorted(refused.items()) if i not in written)

    def _create(self, rows: Sequence[Record], indexes: Sequence[int], result: WriteResult,
                key: Sequence[str] | None = None) -> WriteResult:
        """Batch-create rows (continuing after a refused one). With a key, a row refused as
        a duplicate of a unique value that the key now finds (written by an earlier attempt
        the server finished meanwhile) is updated instead."""
        records = [self._payload(rows[i], with_id=True) for i in indexes]
        outcomes = self._call("writing", self.client.batch, self.name, "create", records,
                              write=True)
        duplicates: list[int] = []
        for outcome in outcomes:
            row_index = indexes[outcome.index]
            if outcome.ok:
                result.written += 1
                if outcome.id is not None:
                    result.created_ids[row_index] = outcome.id
            elif outcome.code == "UNIQUE_VIOLATION" and key:
                duplicates.append(row_index)
            else:
                result.refused.append(Refusal(row_index, outcome.code or "REFUSED",
                                              outcome.message or "refused"))
        if duplicates:
            assert key is not None
            subset = [rows[i] for i in duplicates]
            found = self._ids(key, subset)
            self._update(rows, [(duplicates[j], rid) for j, ids in found.items()
                                for rid in ids], result)
            result.refused.extend(
                Refusal(i, "UNIQUE_VIOLATION", "a unique field of the record holds a value "
                        "another record holds")
                for j, i in enumerate(duplicates) if j not in found)
        result.refused.sort(key=lambda r: r.index)
        return result

    def _write_by_id(self, operation: Operation, rows: Sequence[Record]) -> WriteResult:
        """Writes matched by id: the server's batch update, or its upsert by id (which keeps
        the id given when it creates)."""
        result = WriteResult()
        records, indexes = [], []
        for i, row in enumerate(rows):
            if row.get("id") is None:
                result.refused.append(Refusal(i, "KEY_MISSING", "no id to match by"))
                continue
            records.append({**self._payload(row, with_id=False), "id": str(wire(row["id"]))})
            indexes.append(i)
        batch_op = "update" if operation == "update" else "upsert"
        if records:
            outcomes = self._call("writing", self.client.batch, self.name, batch_op, records,
                                  write=True)
            for outcome in outcomes:
                row_index = indexes[outcome.index]
                if outcome.ok:
                    result.written += 1
                elif outcome.code != "RECORD_NOT_FOUND":
                    result.refused.append(Refusal(row_index, outcome.code or "REFUSED",
                                                  outcome.message or "refused"))
        result.refused.sort(key=lambda r: r.index)
        return result

    def _delete(self, key: Sequence[str], rows: Sequence[Record]) -> WriteResult:
        """Delete by ids (found by key first unless the key is the id); a record already gone
        is no refusal, only not written."""
        if key == ["id"]:
            found = {i: [str(wire(r["id"]))] for i, r in enumerate(rows)
                     if r.get("id") is not None}
        else:
            self._known(key, "deleting from")
            found = self._ids(key, rows)
        targets = [(i, rid) for i, ids in found.items() for rid in ids]
        result = WriteResult()
        if not targets:
            return result
        outcomes = self._call("deleting from", self.client.delete_many, self.name,
                              [rid for _, rid in targets], write=True)
        deleted: set[int] = set()
        refused: dict[int, Refusal] = {}
        for outcome in outcomes:
            row_index = targets[outcome.index][0]
            if outcome.ok:
                deleted.add(row_index)
            elif outcome.code != "RECORD_NOT_FOUND":
                refused.setdefault(row_index, Refusal(row_index, outcome.code or "REFUSED",
                                                      outcome.message or "refused"))
        result.written = len(deleted - set(refused))
        result.refused = [r for i, r in sorted(refused.items()) if i not in deleted]
        return result

    # -- single guarded writes (two-way syncs) ------------------------------------------------
    def write_one(self, tx: Any, operation: Operation, key: Sequence[str], row: Record,
                  expected: Mapping[str, Any] | None = None) -> bool:
        """One record, guarded: an update or delete only if the record still holds `expected`
        and has not been written since it was compared (`If-Match` with its `updated_at`);
        an insert only if the key finds no record (nor does the server's unique check)."""
        key = list(key)
        self._known([*key, *(expected or {})], "writing")
        found = self._find(key, [tuple(row.get(k) for k in key)], list(expected or {}))
        if operation == "insert":
            if found:
                return False
            try:
                self._raw(self.client.create, self.name, self._payload(row, with_id=True))
            except osc.RequestRefused as exc:
                if exc.code == "UNIQUE_VIOLATION":
                    return False  # created meanwhile
                raise self._error(exc, "writing", write=True) from None
            except osc.ObjectStackError as exc:
                raise self._error(exc, "writing", write=True) from None
            return True
        if not found:
            return False
        for record in found:
            if any(wire(record.get(n)) != wire(v) for n, v in (expected or {}).items()):
                return False
        for record in found:
            try:
                if operation == "delete":
                    self._raw(self.client.delete, self.name, str(record["id"]),
                              if_match=record.get("updated_at"))
                else:
                    self._raw(self.client.update, self.name, str(record["id"]),
                              self._payload(row, with_id=False),
                              if_match=record.get("updated_at"))
            except osc.NotFoundError:
                return False  # deleted meanwhile
            except osc.RequestRefused as exc:
                if exc.code == "CONCURRENT_UPDATE":
                    return False  # written meanwhile
                raise self._error(exc, "writing", write=True) from None
            except osc.ObjectStackError as exc:
                raise self._error(exc, "writing", write=True) from None
        return True

    # -- orchestration ------------------------------------------------------------------------
    def count(self) -> int | None:
        if not self.describe().exists and not self.describe(refresh=True).exists:
            return None
        return self._call("counting", self.client.count, self.name)

    def change_token(self, filter: FilterNode | None, cursor_field: str | None) -> Any:
        """[records within the filter, their largest cursor value]. Without a cursor field,
        the largest `updated_at` (every write stamps it)."""
        cursor = cursor_field or "updated_at"
        fields = self._fields()
        self._known([cursor], "reading")
        plan = translate_filter(filter, fields, self.display)
        if plan.exact:
            records, total = self._call(
                "reading", self.client.list_with_total, self.name, filter=plan.where,
                fields=[cursor, "id"], sort=f"-{cursor}", limit=1)
            return [total, records[0].get(cursor) if records else None]
        request = ReadRequest(columns=[cursor], order_by=["id"], batch_size=5000,
                              filter=filter)
        values = [r[cursor] for page in self.read_batches(request) for r in page]
        present = [v for v in values if v is not None]
        return [len(values), max(present, key=lambda v: _instant(v) or v) if present else None]


def _reason(exc: osc.RequestRefused) -> str:
    """The server's own message of a refused call (not the method and URL before it)."""
    details = exc.details
    for name in ("error", "message"):
        text = details.get(name)
        if isinstance(text, str) and text and text != exc.code:
            return text
    return exc.message
