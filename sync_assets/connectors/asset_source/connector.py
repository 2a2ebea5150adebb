"""The Dagster asset source's endpoint: the Arrow table a run was handed, read like any
record set (see the package docstring).

The table is held in memory, so this endpoint can do what a database does: it reads in any
order (the cursor's for incremental syncs), within a cursor's bounds, with the sync's
filter evaluated exactly as the engine evaluates it, in pages as Arrow tables (the engine's
columnar lane) or records, and finds records by key. It is read only: a sync writes to
another system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ... import filters as objectql
from ...filters import And, Condition, FilterNode
from ..arrow_types import kind_of, read_type
from ..base import (
    CURSOR_COLUMN,
    Capabilities,
    ConnectorError,
    Description,
    Endpoint,
    FieldInfo,
    Operation,
    ReadRequest,
    Record,
    WriteResult,
)
from .provided import provided
from .settings import AssetSourceSettings, asset_path

#: rows turned into Python records at a time
_RECORD_SLICE = 4096


def normalized(table: pa.Table, display: str) -> pa.Table:
    """The table with the types it is read as (nanoseconds truncated to microseconds, the
    precision every destination keeps) and without pandas' schema metadata."""
    names = table.column_names
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConnectorError(f"{display} has more than one column named "
                             f"{', '.join(doubled)}: give each column its own name")
    columns, fields = [], []
    for f, column in zip(table.schema, table.columns, strict=True):
        t = read_type(f.type)
        if t != f.type:
            try:
                column = column.cast(t, safe=False)
            except pa.ArrowException as exc:
                raise ConnectorError(f"{display}: column {f.name} ({f.type}) cannot be read "
                                     f"as {t}: {exc}") from None
        columns.append(column)
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


class AssetTable(Endpoint):
    """The output of one upstream Dagster asset, as an Arrow table held for one run."""

    capabilities = Capabilities(
        transactional=False, filter_pushdown=True, ordered_reads=True, shards=False,
        native_upsert=False, hosts_state=False, creates_resource=False,
    )

    def __init__(self, table: pa.Table, key: Sequence[str], display: str, asset: str) -> None:
        self.display = display
        self.asset = asset
        self.table = normalized(table, display)
        self.key = tuple(key)
        self._check_key()

    def _check_key(self) -> None:
        """The declared key identifies records: its columns exist, hold no null and no
        combination twice (the engine then trusts it, as it trusts a primary key)."""
        if not self.key:
            return
        names = self.table.column_names
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ConnectorError(f"{self.display}: key column {', '.join(missing)} is not a "
                                 f"column of the asset's output; columns: {', '.join(names)}")
        for k in self.key:
            nulls = self.table.column(k).null_count
            if nulls:
                raise ConnectorError(f"{self.display}: key column {k} is null in {nulls} "
                                     "row" + ("" if nulls == 1 else "s")
                                     + ": a key must identify every record")
        keys = self.table.select(list(self.key))
        try:
            counts = keys.group_by(list(self.key)).aggregate([([], "count_all")])
            doubled = counts.filter(pc.greater(counts.column("count_all"), 1))
            first = doubled.slice(0, 1).select(list(self.key)).to_pylist()
            repeated = doubled.num_rows
        except pa.ArrowException:  # a type Arrow cannot group by: compared in Python
            seen: set[Any] = set()
            dupes: list[Any] = []
            for row in keys.to_pylist():
                value = tuple(row.values())
                try:
                    if value in seen:
                        dupes.append(row)
                    seen.add(value)
                except TypeError:
                    raise ConnectorError(f"{self.display}: key {', '.join(self.key)} has "
                                         "values that cannot identify a record (lists or "
                                         "maps)") from None
            first, repeated = dupes[:1], len(dupes)
        if repeated:
            shown = ", ".join(f"{k}={v!r}" for k, v in first[0].items())
            raise ConnectorError(
                f"{self.display}: key {', '.join(self.key)} is not unique in the asset's "
                f"output ({repeated} value{'' if repeated == 1 else 's'} appear more than "
                f"once, e.g. {shown}): a key must identify every record")

    # -- describe ---------------------------------------------------------------------------
    def describe(self, *, refresh: bool = False) -> Description:
        return Description(
            fields={f.name: FieldInfo(f.name, f.type, f.nullable and f.name not in self.key,
                                      kind_of(f.type))
                    for f in self.table.schema},
            primary_key=self.key,
        )

    def is_empty(self) -> bool:
        return self.table.num_rows == 0

    # -- read -------------------------------------------------------------------------------
    def _column(self, name: str) -> Any:
        if name not in self.table.column_names:
            raise ConnectorError(f"{self.display} has no column {name}; columns: "
                                 f"{', '.join(self.table.column_names)}")
        return self.table.column(name)

    def _selected(self, request: ReadRequest) -> tuple[pa.Table, bool]:
        """The rows within the request's null test and cursor bounds, in its order; and
        whether a bound Arrow could not compare, which the records path then applies."""
        for name in (*request.columns, *request.order_by):
            self._column(name)
        table = self.table
        if request.null_cursor is not None:
            table = table.filter(pc.is_null(self._column(request.null_cursor)))
        ctf = request.cursor_field
        exact = False
        if ctf is not None:
            self._column(ctf)
            table = table.filter(pc.is_valid(table.column(ctf)))
            t = table.schema.field(ctf).type
            for bound, compare in ((request.lower, pc.greater_equal),
                                   (request.upper, pc.less_equal)):
                if bound is None:
                    continue
                try:
                    mask = compare(table.column(ctf), pa.scalar(bound, type=t))
                except (pa.ArrowException, TypeError, ValueError):
                    exact = True  # compared record by record, as the engine compares
                    continue
                table = table.filter(mask)
        order = list(dict.fromkeys([*([ctf] if ctf else []), *request.order_by]))
        if order and table.num_rows > 1:
            try:
                table = table.sort_by([(c, "ascending") for c in order])
            except pa.ArrowException:
                if ctf is not None:
                    raise ConnectorError(
                        f"{self.display} cannot be read in {ctf} order: Arrow cannot sort "
                        f"its type {table.schema.field(ctf).type}") from None
                # a key Arrow cannot sort (a list, say): a whole read in the output's order
        return table, exact

    @staticmethod
    def _exact(rows: list[Record], request: ReadRequest, bounds: bool) -> list[Record]:
        """The filter (and, where Arrow could not compare them, the cursor bounds) on
        records, with the engine's own evaluator."""
        if request.filter is not None:
            rows = [r for r in rows if objectql.evaluate_filter(request.filter, r)]
        ctf = request.cursor_field
        if bounds and ctf is not None:
            tests: list[FilterNode] = []
            if request.lower is not None:
                tests.append(Condition(ctf, "gte", request.lower))
            if request.upper is not None:
                tests.append(Condition(ctf, "lte", request.upper))
            node = And(tuple(tests))
            rows = [r for r in rows if objectql.evaluate_filter(node, r)]
        return rows

    def read_batches(self, request: ReadRequest) -> Iterator[list[Record]]:
        table, bounds = self._selected(request)
        ctf = request.cursor_field
        wanted = list(dict.fromkeys([
            *request.columns, *(f for f in objectql.filter_fields(request.filter)
                                if f in table.column_names), *([ctf] if ctf else [])]))
        table = table.select(wanted)
        size = max(1, request.batch_size)
        page: list[Record] = []
        for start in range(0, table.num_rows, _RECORD_SLICE):
            rows = self._exact(table.slice(start, _RECORD_SLICE).to_pylist(), request, bounds)
            for row in rows:
                out = {c: row.get(c) for c in request.columns}
                if ctf is not None:
                    out[CURSOR_COLUMN] = row.get(ctf)
                page.append(out)
                if len(page) >= size:
                    yield page
                    page = []
        if page:
            yield page

    def read_arrow(self, request: ReadRequest, keys_only: bool = False) -> Iterator[Any] | None:
        """Pages as Arrow tables, unless a record must be looked at here (a filter, a shard,
        a cursor bound Arrow cannot compare)."""
        if request.filter is not None or request.shard is not None:
            return None
        table, bounds = self._selected(request)
        if bounds:
            return None
        return self._arrow_pages(table, request)

    @staticmethod
    def _arrow_pages(table: pa.Table, request: ReadRequest) -> Iterator[pa.Table]:
        out = table.select(list(request.columns))
        if request.cursor_field is not None:
            out = out.append_column(CURSOR_COLUMN, table.column(request.cursor_field))
        size = max(1, request.batch_size)
        for start in range(0, out.num_rows, size):
            yield out.slice(start, size).combine_chunks()

    def high_water_mark(self, cursor_field: str, request: ReadRequest) -> Any:
        column = self._column(cursor_field)
        if request.filter is None:
            return pc.max(column).as_py()
        fields = [f for f in objectql.filter_fields(request.filter)
                  if f in self.table.column_names]
        rows = self.table.select(list(dict.fromkeys([cursor_field, *fields]))).to_pylist()
        values = [r[cursor_field] for r in rows if r[cursor_field] is not None
                  and objectql.evaluate_filter(request.filter, r)]
        return max(values) if values else None

    def lookup(self, tx: Any, key: Sequence[str], keys: Sequence[tuple[Any, ...]],
               columns: Sequence[str]) -> list[Record]:
        if not keys:
            return []
        table = self.table
        for i, name in enumerate(key):
            column = self._column(name)
            values = list({k[i] for k in keys})
            try:
                table = table.filter(pc.is_in(table.column(name),
                                              value_set=pa.array(values, column.type)))
            except (pa.ArrowException, TypeError, ValueError):
                continue  # matched exactly below
        out_columns = [c for c in dict.fromkeys([*key, *columns]) if c in table.column_names]
        wanted = set(keys)
        return [row for row in table.select(out_columns).to_pylist()
                if tuple(row.get(k) for k in key) in wanted]

    # -- write: never ---------------------------------------------------------------------
    def _read_only(self) -> ConnectorError:
        return ConnectorError(f"{self.display} is the output of the Dagster asset {self.asset}: "
                              "a sync reads it and cannot write to it (make it the source, "
                              "and another system the destination)")

    def write(self, tx: Any, operation: Operation, key: Sequence[str],
              rows: Sequence[Record]) -> WriteResult:
        raise self._read_only()

    def create(self, tx: Any, fields: Sequence[FieldInfo], key: Sequence[str]) -> None:
        raise self._read_only()

    # -- orchestration ------------------------------------------------------------------------
    def count(self) -> int | None:
        return self.table.num_rows

    def change_token(self, filter: FilterNode | None, cursor_field: str | None) -> Any:
        """The row count and a digest of the table's content (filters are not looked at:
        a superset of the changes)."""
        sink = pa.BufferOutputStream()
        table = self.table.combine_chunks()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest = hashlib.blake2b(memoryview(sink.getvalue()), digest_size=16).hexdigest()
        return [table.num_rows, digest]


def open_asset_source(settings: AssetSourceSettings, resource: str, display: str
                      ) -> AssetTable:
    """The endpoint of the asset `resource` names, over the table provided for this run."""
    path = asset_path(resource)
    if not path:
        raise ConnectorError(f"{display}: externalResource must be an asset key path, "
                             "e.g. analytics/churn_scores")
    table = provided(path)
    if table is None:
        raise ConnectorError(
            f"{display} is the output of the Dagster asset {path}: a sync from it runs only "
            "inside Dagster, which loads that asset's value for the run (materialize the "
            "sync's asset in Dagster; `sync-assets run` and `plan` have no value to read)")
    if not isinstance(table, pa.Table):
        raise ConnectorError(f"{display}: the value provided for asset {path} is a "
                             f"{type(table).__name__}, not an Arrow table")
    return AssetTable(table, settings.key, display, path)
