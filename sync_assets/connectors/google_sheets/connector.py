"""One tab of a Google spreadsheet as a record set (`type: google_sheets`): row 1 holds the
field names, each row below it one record, and a key column (settings `key`, or the sync's
matchKey) identifies records.

How the API shapes the connector:

- Sheets keep no change times, so a tab is read whole: one `values.batchGet` with
  UNFORMATTED_VALUE (numbers as numbers, text as text), kept as this run's snapshot. Lookups,
  reads, counts and deletes are answered from it, and the connector's own writes keep it up
  to date (an append says where its rows landed), so a run reads the tab once. The engine's
  fingerprints skip unchanged records; deletes of `operation: sync` come from the engine's
  mirror. With `orderedReads` a tab is read in a changeTrackingField's order by sorting.
- Types come from the values (every value a whole number: integer; ISO-8601 text: datetime
  or date; ...), or from settings `columns`. Values are written RAW (never parsed as
  formulas): instants and dates as ISO-8601 text, None as an empty cell (the API skips a null
  rather than clearing the cell), JSON as its text.
- Writes, in few calls (the API allows 60 a minute per user): inserts as one
  `values.append` (INSERT_ROWS) of up to `maxBatchRows` rows, updates as one
  `values.batchUpdate` with a range per row (only the written columns), deletes as one
  `spreadsheets.batchUpdate` of `deleteDimension` requests, bottom-up so each index still
  means the row it meant.
- Each call is atomic: a refused one (HTTP 400, e.g. a strict data-validation rule) changed
  nothing. The batch is then split in halves until the refused rows are alone, and each of
  those is a per-record refusal with the API's status and message.
- No transactions: sync state lives in the project's state database, written around each
  acknowledged write. A write whose outcome is unknown (a timeout, a 5xx) drops the
  snapshot, so the engine's retry looks the records up again and finds an append that did
  land.
- The tab is the record set; a missing one is created (addSheet, then the header row).
  Positions are the tab's rows as read in this run: someone inserting or sorting rows in
  the tab while a run writes to it can make an update or delete meet the wrong row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from ...filters import FilterNode
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
from .client import SheetsClient, SheetsError
from .settings import GoogleSheetsSettings

Row = list[Any]

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                       r"(Z|[+-]\d{2}:?\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
_UPDATED_RANGE = re.compile(r"!\$?([A-Za-z]+)\$?(\d+)(?::\$?[A-Za-z]+\$?\d+)?$")


# -- A1 notation --------------------------------------------------------------------------
def column_letters(number: int) -> str:
    """Column 1 -> A, 27 -> AA."""
    out = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def quoted(title: str) -> str:
    """A tab's title as A1 notation names it: in single quotes, quotes doubled."""
    return "'" + title.replace("'", "''") + "'"


def first_row_of(updated_range: str) -> int:
    """The first row number of an A1 range such as `'People'!A12:D20`."""
    found = _UPDATED_RANGE.search(updated_range)
    if found is None:
        raise ConnectorError(f"the API answered an append with a range it does not explain: "
                             f"{updated_range!r}")
    return int(found.group(2))


# -- values --------------------------------------------------------------------------------
def cell(value: Any) -> Any:
    """A value as it is written (RAW): text, numbers and booleans as they are; instants,
    dates and times as ISO-8601 text; None as the empty string (a null is skipped by the
    API, not written); lists and maps as JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, sort_keys=True)
    if isinstance(value, bytes | bytearray | memoryview):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def infer_kind(values: Sequence[Any]) -> str:
    """The portable kind of a column from its values as read (UNFORMATTED_VALUE)."""
    present = [v for v in values if v != "" and v is not None]
    if not present:
        return "unknown"
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        whole = all(isinstance(v, int) or float(v).is_integer() for v in present)
        return "integer" if whole else "float"
    if all(isinstance(v, str) for v in present):
        for kind, pattern in (("date", _DATE), ("datetime", _DATETIME), ("time", _TIME)):
            if all(pattern.match(v) for v in present):
                return kind
    return "text"


def typed(value: Any, kind: str) -> Any:
    """A cell's value as a record holds it, by the column's kind (an empty cell: None)."""
    if value == "" or value is None:
        return None
    try:
        if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
            return int(value) if float(value).is_integer() else value
        if kind == "integer" and isinstance(value, str):
            return int(value)
        if kind == "float" and isinstance(value, int | float | str) and not isinstance(
                value, bool):
            return float(value)
        if kind == "decimal" and not isinstance(value, bool):
            return Decimal(str(value))
        if kind == "text" and not isinstance(value, str):
            return str(int(value)) if isinstance(value, float) and value.is_integer() \
                else str(value)
        if isinstance(value, str):
            if kind == "datetime":
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            if kind == "date":
                return date.fromisoformat(value)
            if kind == "time":
                return time.fromisoformat(value)
            if kind == "json":
                return json.loads(value)
    except ValueError:
        return value  # a value the column's kind does not fit: as the sheet holds it
    return value


def _sortable(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is not None, str(type(v).__name__) if v is not None else "",
                  v if v is not None else 0) for v in values)


# -- the endpoint ----------------------------------------------------------------------------
class Snapshot:
    """The tab as read in this run: its header and its data rows (row 2 of the tab is
    `rows[0]`), kept up to date by the connector's own writes."""

    def __init__(self, header: list[str], rows: list[Row]) -> None:
        self.header = header
        self.rows = rows
        self.index = {name: i for i, name in enumerate(header) if name}
        #: key columns -> {key values as written: positions}, built when first asked
        self.keys: dict[tuple[str, ...], dict[tuple[Any, ...], list[int]]] = {}

    def value(self, row: Row, name: str) -> Any:
        i = self.index[name]
        return row[i] if i < len(row) else ""

    def records(self) -> Iterator[tuple[int, Row]]:
        """(position in `rows`, row) of every row that holds a value."""
        for position, row in enumerate(self.rows):
            if any(v != "" and v is not None for v in row):
                yield position, row


def open_tab(settings: GoogleSheetsSettings, resource: str, display: str) -> SheetsTab:
    return SheetsTab(settings, resource, display)


class SheetsTab(Endpoint):
    """One tab of a spreadsheet, through the Sheets API v4."""

    def __init__(self, settings: GoogleSheetsSettings, title: str, display: str,
                 client: SheetsClient | None = None) -> None:
        if not title:
            raise ConnectorError(f"{display}: externalResource must name a tab")
        self.settings = settings
        self.title = title
        self.display = display
        self.client = client or SheetsClient(settings, display)
        self.capabilities = Capabilities(
            transactional=False, filter_pushdown=False, ordered_reads=settings.ordered_reads,
            shards=False, native_upsert=False, max_batch_size=settings.max_batch_rows,
            rate_limit=settings.requests_per_minute / 60.0, hosts_state=False,
            creates_resource=True, concurrent_writers=1, idempotent_inserts=False)
        self._sheet_id: int | None = None
        self._exists: bool | None = None
        self._snapshot: Snapshot | None = None
        self._desc: Description | None = None

    def usage(self) -> ApiUsage:
        return self.client.usage()

    @property
    def _sid(self) -> str:
        return self.settings.spreadsheet_id

    # -- reading the tab ----------------------------------------------------------------------
    def _locate(self) -> bool:
        """Whether the tab exists (spreadsheets.get of the tabs' properties)."""
        answer = self.client.call(
            "reading the spreadsheet's tabs",
            lambda r: r.spreadsheets.get(spreadsheetId=self._sid,
                                           fields="sheets.properties"),
            repeatable=True)
        for sheet in answer.get("sheets", []):
            props = sheet.get("properties", {})
            if props.get("title") == self.title:
                self._sheet_id = int(props.get("sheetId", 0))
                self._exists = True
                return True
        self._sheet_id, self._exists = None, False
        return False

    def _load(self) -> Snapshot:
        if self._snapshot is not None:
            return self._snapshot
        if self._exists is None:
            self._locate()
        if not self._exists:
            raise ConnectorError(f"{self.display}: the spreadsheet has no tab "
                                 f"'{self.title}'")
        answer = self.client.call(
            "reading the tab",
            lambda r: r.values.batchGet(
                spreadsheetId=self._sid, ranges=[quoted(self.title)],
                valueRenderOption="UNFORMATTED_VALUE", majorDimension="ROWS"),
            repeatable=True)
        ranges = answer.get("valueRanges") or [{}]
        values = [list(r) for r in ranges[0].get("values", [])]
        header = ["" if h is None else str(h).strip() for h in (values[0] if values else [])]
        named = [h for h in header if h]
        duplicated = sorted({h for h in named if named.count(h) > 1})
        if duplicated:
            raise ConnectorError(f"{self.display}: the header row names "
                                 f"{', '.join(duplicated)} more than once")
        self._snapshot = Snapshot(header, values[1:])
        return self._snapshot

    def _forget(self) -> None:
        """Drop what is known of the tab (after a write whose outcome is unknown)."""
        self._snapshot = None
        self._desc = None

    def describe(self, *, refresh: bool = False) -> Description:
        if refresh:
            self._forget()
            self._exists = None
        if self._desc is not None:
            return self._desc
        if self._exists is None:
            self._locate()
        if not self._exists:
            return Description(fields={}, exists=False)
        snap = self._load()
        fields: dict[str, FieldInfo] = {}
        for name, i in snap.index.items():
            kind = self.settings.columns.get(name) or infer_kind(
                [row[i] for _, row in snap.records() if i < len(row)])
            fields[name] = FieldInfo(name, None, name not in self.settings.key, kind)
        missing = [k for k in self.settings.key if k not in fields]
        if missing:
            raise ConnectorError(f"{self.display}: key column {', '.join(missing)} is not in "
                                 f"the header row; columns: {', '.join(fields)}")
        self._desc = Description(fields=fields, primary_key=tuple(self.settings.key))
        return self._desc

    def _kinds(self) -> dict[str, str]:
        return {n: f.kind for n, f in self.describe().fields.items()}

    def _record(self, snap: Snapshot, row: Row, columns: Sequence[str],
                kinds: Mapping[str, str]) -> Record:
        return {c: typed(snap.value(row, c), kinds.get(c, "unknown")) if c in snap.index
                else None for c in columns}

    def _known(self, names: Sequence[str], doing: str) -> None:
        fields = self.describe().fields
        unknown = [n for n in names if n not in fields]
        if unknown:
            raise ConnectorError(f"{doing} {self.display}: no column {', '.join(unknown)}; "
                                 f"columns: {', '.join(fields)}")

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        if not self.describe().exists:
            return
        snap = self._load()
        kinds = self._kinds()
        ctf = request.cursor_field
        wanted = list(dict.fromkeys([*request.columns, *request.order_by,
                                     *([ctf] if ctf else []),
                                     *([request.null_cursor] if request.null_cursor else [])]))
        self._known(wanted, "reading")
        records = [self._record(snap, row, wanted, kinds) for _, row in snap.records()]
        if request.null_cursor is not None:
            records = [r for r in records if r.get(request.null_cursor) is None]
        if ctf is not None and self.capabilities.ordered_reads:
            records = [r for r in records if r.get(ctf) is not None
                       and (request.lower is None or r[ctf] >= request.lower)
                       and (request.upper is None or r[ctf] <= request.upper)]
        if self.capabilities.ordered_reads and request.order_by:
            order = list(request.order_by)
            records.sort(key=lambda r: _sortable(tuple(r.get(c) for c in order)))
        for start in range(0, len(records), max(1, request.batch_size)):
            page = []
            for r in records[start : start + request.batch_size]:
                out = {c: r.get(c) for c in request.columns}
                if ctf is not None:
                    out[CURSOR_COLUMN] = r.get(ctf)
                page.append(out)
            yield page

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        if not self.capabilities.ordered_reads or not self.describe().exists:
            return None
        snap = self._load()
        kinds = self._kinds()
        self._known([cursor_field], "reading")
        values = [typed(snap.value(row, cursor_field), kinds[cursor_field])
                  for _, row in snap.records()]
        present = [v for v in values if v is not None]
        try:
            return max(present) if present else None
        except TypeError:
            raise ConnectorError(f"{self.display}: {cursor_field} holds values of different "
                                 "types, which have no order (set its kind in `columns`)"
                                 ) from None

    def _key_index(self, key: Sequence[str]) -> dict[tuple[Any, ...], list[int]]:
        """The snapshot's positions by the values of `key` (as written), built once a
        snapshot and kept by the writes."""
        snap = self._load()
        index = snap.keys.get(tuple(key))
        if index is None:
            kinds = self._kinds()
            index = {}
            for position, row in snap.records():
                values = tuple(cell(typed(snap.value(row, k), kinds.get(k, "unknown")))
                               for k in key)
                index.setdefault(values, []).append(position)
            snap.keys[tuple(key)] = index
        return index

    def _matches(self, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
                 ) -> dict[tuple[Any, ...], list[int]]:
        """Positions in the snapshot of the rows holding each key (compared as written)."""
        index = self._key_index(key)
        found: dict[tuple[Any, ...], list[int]] = {}
        for k in keys:
            positions = index.get(tuple(cell(v) for v in k))
            if positions:
                found[k] = list(positions)
        return found

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        if not keys or not self.describe().exists:
            return []
        self._known(list(key), "looking up in")
        snap = self._load()
        kinds = self._kinds()
        wanted = list(dict.fromkeys([*key, *columns]))
        return [self._record(snap, snap.rows[p], wanted, kinds)
                for positions in self._matches(key, keys).values() for p in positions]

    def count(self) -> int | None:
        """Records in this run's snapshot (a run reads the tab once, at its start)."""
        if not self.describe().exists:
            return None
        return sum(1 for _ in self._load().records())

    def change_token(self, filter: FilterNode | None, cursor_field: str | None) -> Any:
        """[records within the filter, a digest of their values]: a sheet keeps no change
        times, so what it holds is the token."""
        import hashlib

        from ... import filters as objectql

        if not self.describe(refresh=True).exists:
            return [0, None]
        snap = self._load()
        kinds = self._kinds()
        names = list(snap.index)
        records = [self._record(snap, row, names, kinds) for _, row in snap.records()]
        if filter is not None:
            records = [r for r in records if objectql.evaluate_filter(filter, r)]
        digest = hashlib.sha256(json.dumps([[cell(r[n]) for n in names] for r in records],
                                           default=str).encode()).hexdigest()
        return [len(records), digest]

    # -- writing ------------------------------------------------------------------------------
    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        """Add the tab (addSheet) and write its header row."""
        names = [f.name for f in fields]
        answer = self.client.call(
            "adding the tab",
            lambda r: r.spreadsheets.batchUpdate(spreadsheetId=self._sid, body={
                "requests": [{"addSheet": {"properties": {
                    "title": self.title,
                    "gridProperties": {"rowCount": 1000,
                                       "columnCount": max(26, len(names))}}}}]}),
            repeatable=False)
        replies = answer.get("replies") or [{}]
        props = replies[0].get("addSheet", {}).get("properties", {})
        self._sheet_id = int(props.get("sheetId", 0))
        self._exists = True
        self.client.call(
            "writing the header row",
            lambda r: r.values.batchUpdate(spreadsheetId=self._sid, body={
                "valueInputOption": "RAW",
                "data": [{"range": f"{quoted(self.title)}!A1:{column_letters(len(names))}1",
                          "majorDimension": "ROWS", "values": [names]}]}),
            repeatable=True)
        self._snapshot = Snapshot(names, [])
        self._desc = Description(
            fields={f.name: FieldInfo(f.name, None, f.name not in key,
                                      self.settings.columns.get(f.name) or f.kind)
                    for f in fields},
            primary_key=tuple(self.settings.key))

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        if not rows:
            return WriteResult()
        if len(rows) > self.settings.max_batch_rows:
            raise ConnectorError(f"{self.display} takes at most {self.settings.max_batch_rows} "
                                 f"rows a call (got {len(rows)})")
        if not self.describe().exists:
            raise ConnectorError(f"{self.display}: the spreadsheet has no tab '{self.title}'")
        key = list(key)
        written = sorted({n for r in rows for n in r})
        self._known([*key, *written], "writing to")
        if operation == "delete":
            return self._delete(key, rows)
        if operation == "insert":
            return self._refusing(list(range(len(rows))),
                                  lambda chosen: self._append([rows[i] for i in chosen]))
        found = self._matches(key, [tuple(r.get(k) for k in key) for r in rows])
        targets: list[tuple[int, int]] = []  # (row index in the batch, snapshot position)
        missing: list[int] = []
        for i, row in enumerate(rows):
            positions = found.get(tuple(row.get(k) for k in key), [])
            targets.extend((i, p) for p in positions)
            if not positions:
                missing.append(i)
        result = self._refusing(sorted({i for i, _ in targets}), lambda chosen: self._update(
            rows, [(i, p) for i, p in targets if i in set(chosen)]))
        if operation == "upsert" and missing:
            inserted = self._refusing(missing, lambda chosen: self._append(
                [rows[i] for i in chosen]))
            result.written += inserted.written
            result.refused = sorted([*result.refused, *inserted.refused],
                                    key=lambda r: r.index)
        return result

    def _refusing(self, indexes: list[int], send: Any) -> WriteResult:
        """Send rows (by index in the batch); where the API refuses the call as a whole
        (each call is atomic), send each half again, until each refused row is alone: it
        is then a refusal with the API's status and message."""
        result = WriteResult()
        if not indexes:
            return result
        try:
            send(indexes)
            result.written += len(indexes)
        except SheetsError as exc:
            if exc.status != 400:
                raise
            if len(indexes) == 1:
                result.refused.append(Refusal(indexes[0], exc.code or "INVALID_ARGUMENT",
                                              exc.reason))
                return result
            middle = len(indexes) // 2
            for half in (indexes[:middle], indexes[middle:]):
                part = self._refusing(half, send)
                result.written += part.written
                result.refused.extend(part.refused)
        return result

    def _append(self, rows: Sequence[Record]) -> None:
        snap = self._load()
        header = snap.header
        width = len(header)
        values = [[cell(row.get(name)) if name in row else "" for name in header]
                  for row in rows]
        try:
            answer = self.client.call(
                f"appending {len(rows)} rows",
                lambda r: r.values.append(
                    spreadsheetId=self._sid,
                    range=f"{quoted(self.title)}!A:{column_letters(width)}",
                    valueInputOption="RAW", insertDataOption="INSERT_ROWS",
                    body={"majorDimension": "ROWS", "values": values}),
                repeatable=False)
        except SheetsError:
            raise  # refused: nothing was written
        except ConnectorError:
            self._forget()  # it may have been applied: read the tab again before more
            raise
        start = first_row_of(answer.get("updates", {}).get("updatedRange", "")) - 2
        if start < 0:
            self._forget()
            raise ConnectorError(f"{self.display}: the API appended rows over the header row")
        # INSERT_ROWS: the rows went in at `start`, anything from there on moved down
        at_end = start >= len(snap.rows)
        if len(snap.rows) < start:
            snap.rows.extend([] for _ in range(start - len(snap.rows)))
        snap.rows[start:start] = [list(v) for v in values]
        if not at_end:
            snap.keys.clear()  # positions moved: indexes are built again when asked
        for names, index in snap.keys.items():
            columns = [snap.index[n] for n in names]
            for offset, row in enumerate(values):
                index.setdefault(tuple(row[c] for c in columns), []).append(start + offset)

    def _update(self, rows: Sequence[Record], targets: Sequence[tuple[int, int]]) -> None:
        if not targets:
            return
        snap = self._load()
        data = []
        changes: list[tuple[int, dict[int, Any]]] = []
        for i, position in targets:
            row = rows[i]
            columns = sorted(snap.index[n] for n in row)
            values = {c: cell(row[snap.header[c]]) for c in columns}
            changes.append((position, values))
            for run in _runs(columns):
                data.append({
                    "range": f"{quoted(self.title)}!{column_letters(run[0] + 1)}"
                             f"{position + 2}:{column_letters(run[-1] + 1)}{position + 2}",
                    "majorDimension": "ROWS", "values": [[values[c] for c in run]]})
        try:
            self.client.call(
                f"updating {len(targets)} rows",
                lambda r: r.values.batchUpdate(
                    spreadsheetId=self._sid, body={"valueInputOption": "RAW", "data": data}),
                repeatable=True)
        except SheetsError:
            raise
        except ConnectorError:
            self._forget()
            raise
        for position, values in changes:
            row = snap.rows[position]
            row.extend([""] * (max(values) + 1 - len(row)))
            for c, v in values.items():
                row[c] = v

    def _delete(self, key: Sequence[str], rows: Sequence[Record]) -> WriteResult:
        found = self._matches(key, [tuple(r.get(k) for k in key) for r in rows])
        by_row = {tuple(r.get(k) for k in key): i for i, r in enumerate(rows)}
        positions = sorted({p for ps in found.values() for p in ps}, reverse=True)
        if not positions or self._sheet_id is None:
            return WriteResult()
        requests = []
        for first, last in _spans(positions):  # bottom-up: later rows first
            requests.append({"deleteDimension": {"range": {
                "sheetId": self._sheet_id, "dimension": "ROWS",
                "startIndex": first + 1, "endIndex": last + 2}}})
        try:
            self.client.call(
                f"deleting {len(positions)} rows",
                lambda r: r.spreadsheets.batchUpdate(spreadsheetId=self._sid,
                                                       body={"requests": requests}),
                repeatable=False)
        except SheetsError as exc:
            if exc.status == 400:
                raise BatchRefused(str(exc)) from None
            raise
        except ConnectorError:
            self._forget()
            raise
        snap = self._load()
        for position in positions:  # highest first, so each index still holds
            del snap.rows[position]
        snap.keys.clear()  # positions moved
        return WriteResult(written=len({by_row[k] for k in found}))


def _runs(columns: Sequence[int]) -> list[list[int]]:
    """Consecutive column indexes grouped: [0, 1, 2, 5] -> [[0, 1, 2], [5]]."""
    runs: list[list[int]] = []
    for c in columns:
        if runs and runs[-1][-1] == c - 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _spans(descending: Sequence[int]) -> list[tuple[int, int]]:
    """Descending positions as (first, last) spans of adjacent rows, highest span first."""
    spans: list[tuple[int, int]] = []
    for p in descending:
        if spans and spans[-1][0] == p + 1:
            spans[-1] = (p, spans[-1][1])
        else:
            spans.append((p, p))
    return spans

