"""Sync state: the cursor, the fingerprint of every synced record, and the change log.

State lives beside the data it describes (by default in the destination database) so that a
batch's rows, their fingerprints and the advanced cursor commit in one transaction: a run killed
at any point leaves state and data agreeing, and the next run resumes where it stopped.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from ..connectors.sql import arrow, pgcopy
from ..connectors.sql.mysql_dialect import key_text
from ..connectors.sql.table import affected
from .held import HeldFingerprints

_CHUNK = 500
_SCAN = 50_000  # state rows fetched at a time by a scan
_STATE_COLUMNS = pa.schema([("record_key", pa.string()), ("fingerprint", pa.string()),
                            ("created", pa.bool_())])


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    return value


_ZLIB = "zlib:"


def _unpack(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith(_ZLIB):
        text = zlib.decompress(base64.b64decode(text[len(_ZLIB):])).decode()
    return json.loads(text)


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, text), = value.items()
        if tag == "$datetime":
            return datetime.fromisoformat(text)
        if tag == "$date":
            return date.fromisoformat(text)
        if tag == "$decimal":
            return Decimal(text)
    return value


@dataclass(frozen=True)
class FailedRecord:
    """A source record that failed and waits to be retried."""

    record_id: str
    source_key: tuple[Any, ...]
    code: str | None
    message: str
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int


@dataclass(frozen=True)
class PairState:
    """One record of a two-way sync as it was at the last sync."""

    source_fp: str | None
    destination_fp: str | None
    image: dict[str, Any]
    conflict: bool = False
    conflict_source_fp: str | None = None
    conflict_destination_fp: str | None = None


class StateStore:
    """The state tables of one sync in one database."""

    def __init__(
        self, sync_name: str, schema: str | None = None, *, compress: bool = False
    ) -> None:
        self.sync_name = sync_name
        self.compress = compress
        self._upgraded = False
        md = sa.MetaData(schema=schema)
        self.cursors = sa.Table(
            "_sync_assets_cursor", md,
            sa.Column("sync_name", sa.String(255), primary_key=True),
            sa.Column("cursor", sa.Text),
            sa.Column("updated_at", sa.DateTime),
        )
        self.records = sa.Table(
            "_sync_assets_records", md,
            sa.Column("sync_name", sa.String(255), primary_key=True),
            sa.Column("record_key", key_text(500), primary_key=True),
            sa.Column("fingerprint", sa.String(32), nullable=False),
            # True when this sync created the destination record: only those may be mirrored
            # away when they leave the source.
            sa.Column("created", sa.Boolean, nullable=False),
            # SQLite: the key is the table (one B-tree to write, not a table and an index)
            sqlite_with_rowid=False,
        )
        self.changes = sa.Table(
            "_sync_assets_changes", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("sync_name", sa.String(255), nullable=False, index=True),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("at", sa.DateTime, nullable=False),
            sa.Column("operation", sa.String(16), nullable=False),
            sa.Column("record_key", sa.Text, nullable=False),
            sa.Column("before", sa.Text),
            sa.Column("after", sa.Text),
        )
        # Keys seen in the source by a mirror run: a temporary table of the run's own
        # session, gone when its transaction ends, so a mirror of any size runs in flat
        # memory and never sees another run's keys.
        self.seen = sa.Table(
            "_sync_assets_seen_keys", sa.MetaData(),
            sa.Column("record_key", sa.Text, nullable=False),
            prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
        )
        # Two-way syncs: what each side looked like at the last sync, per record.
        self.pairs = sa.Table(
            "_sync_assets_pairs", md,
            sa.Column("sync_name", sa.String(255), primary_key=True),
            sa.Column("record_key", key_text(500), primary_key=True),
            sa.Column("source_fp", sa.String(32)),  # None: absent on that side
            sa.Column("destination_fp", sa.String(32)),
            sa.Column("image", sa.Text),  # the synced two-way values, for merges
            sa.Column("conflict", sa.Boolean, nullable=False, default=False),
            sa.Column("conflict_source_fp", sa.String(32)),  # the open conflict's versions
            sa.Column("conflict_destination_fp", sa.String(32)),
        )
        # Source records a run errored (a failed cast, a refused write, ...): every later
        # run reads them again until they succeed or leave the source.
        self.failed = sa.Table(
            "_sync_assets_failed", md,
            sa.Column("sync_name", sa.String(255), primary_key=True),
            sa.Column("record_id", key_text(500), primary_key=True),
            sa.Column("source_key", sa.Text, nullable=False),  # JSON of the source key values
            sa.Column("code", sa.String(64)),
            sa.Column("message", sa.Text, nullable=False),
            sa.Column("first_failed_at", sa.DateTime, nullable=False),
            sa.Column("last_failed_at", sa.DateTime, nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
        )
        self.metadata = md

    def ensure(self, conn: Connection) -> None:
        if conn.dialect.name == "duckdb":
            self._ensure_duckdb(conn)
            return
        self.metadata.create_all(conn, checkfirst=True)
        if conn.dialect.name == "postgresql" and not self._upgraded:
            self._widen_keys(conn)
            self._upgraded = True

    def _ensure_duckdb(self, conn: Connection) -> None:
        """DuckDB has no SERIAL (what its dialect, borrowed from PostgreSQL, would create for
        the change log's id): number the change log from a sequence of its own."""
        others = [t for t in self.metadata.sorted_tables if t is not self.changes]
        self.metadata.create_all(conn, tables=others, checkfirst=True)
        if sa.inspect(conn).has_table(self.changes.name, schema=self.changes.schema):
            return
        preparer = conn.dialect.identifier_preparer
        table = preparer.format_table(self.changes)
        sequence = preparer.quote(f"{self.changes.name}_id_seq")
        if self.changes.schema:
            sequence = f"{preparer.quote_schema(self.changes.schema)}.{sequence}"
        conn.exec_driver_sql(f"CREATE SEQUENCE IF NOT EXISTS {sequence}")
        columns = [f"id BIGINT PRIMARY KEY DEFAULT nextval('{sequence}')"]
        for column in self.changes.columns:
            if column.name != "id":
                kind = column.type.compile(dialect=conn.dialect)
                columns.append(f"{preparer.quote(column.name)} {kind}"
                               + ("" if column.nullable else " NOT NULL"))
        conn.exec_driver_sql(f"CREATE TABLE {table} ({', '.join(columns)})")

    def _widen_keys(self, conn: Connection) -> None:
        """State tables made before keys were text held them in varchar(1024), refusing
        longer match keys: widen them (varchar to text needs no rewrite in PostgreSQL)."""
        tables = [t for t in (self.records, self.changes, self.pairs)]
        narrow = conn.execute(sa.text(
            "SELECT table_name FROM information_schema.columns WHERE column_name = "
            "'record_key' AND character_maximum_length IS NOT NULL AND table_name IN "
            "(:a, :b, :c) AND table_schema = coalesce(:schema, current_schema())"),
            {"a": tables[0].name, "b": tables[1].name, "c": tables[2].name,
             "schema": self.records.schema}).scalars().all()
        for table in tables:
            if table.name in narrow:
                name = conn.dialect.identifier_preparer.format_table(table)
                conn.execute(sa.text(f"ALTER TABLE {name} ALTER COLUMN record_key TYPE text"))

    # -- cursor ------------------------------------------------------------------------
    def load_cursor(self, conn: Connection) -> Any:
        row = conn.execute(
            sa.select(self.cursors.c.cursor).where(self.cursors.c.sync_name == self.sync_name)
        ).first()
        return _decode(json.loads(row[0])) if row and row[0] is not None else None

    def save_cursor(self, conn: Connection, value: Any) -> None:
        payload = json.dumps(_encode(value))
        now = datetime.now(UTC).replace(tzinfo=None)
        updated = affected(conn, sa.update(self.cursors)
                           .where(self.cursors.c.sync_name == self.sync_name)
                           .values(cursor=payload, updated_at=now))
        if not updated:
            conn.execute(
                sa.insert(self.cursors).values(
                    sync_name=self.sync_name, cursor=payload, updated_at=now
                )
            )

    def cursor_moved_at(self, conn: Connection) -> datetime | None:
        """When a run last committed the cursor (UTC), or None."""
        c = self.cursors.c
        return conn.execute(sa.select(c.updated_at).where(c.sync_name == self.sync_name)
                            ).scalar()

    def forget_everything(self, conn: Connection) -> None:
        """Cursor, records, pairs and failed records of this sync (not the change log)."""
        self.reset(conn)
        for table in (self.pairs, self.failed):
            conn.execute(sa.delete(table).where(table.c.sync_name == self.sync_name))

    def clear_cursor(self, conn: Connection) -> None:
        conn.execute(sa.delete(self.cursors).where(self.cursors.c.sync_name == self.sync_name))

    # -- records -----------------------------------------------------------------------
    def fingerprints(self, conn: Connection, keys: Sequence[str]) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        r = self.records.c
        if conn.dialect.name == "postgresql":  # one query with an array
            stmt = sa.select(r.record_key, r.fingerprint, r.created).where(
                r.sync_name == self.sync_name,
                r.record_key == sa.any_(sa.literal(list(keys), type_=ARRAY(sa.String))))
            return {k: (fp, bool(c)) for k, fp, c in conn.execute(stmt)}
        for i in range(0, len(keys), _CHUNK):
            stmt = sa.select(r.record_key, r.fingerprint, r.created).where(
                r.sync_name == self.sync_name, r.record_key.in_(keys[i : i + _CHUNK])
            )
            out.update({k: (fp, bool(c)) for k, fp, c in conn.execute(stmt)})
        return out

    def held_fingerprints(self, conn: Connection, limit: int) -> HeldFingerprints | None:
        """Every state row of this sync held in memory (`held.py`), or None where there are
        more than `limit`."""
        r = self.records.c
        stmt = sa.select(r.record_key, r.fingerprint, r.created).where(
            r.sync_name == self.sync_name)
        if pgcopy.supported(conn.dialect):
            return HeldFingerprints.scanned_columns(self._copied_state(conn, stmt), limit)
        result = conn.execution_options(yield_per=_SCAN).execute(stmt)
        try:
            return HeldFingerprints.scanned(result.partitions(), limit)
        finally:
            result.close()

    def _copied_state(self, conn: Connection, stmt: sa.Select[Any]
                      ) -> Iterator[tuple[list[str], list[str], Any]]:
        """The state rows of `stmt` as columns, `_SCAN` at a time in key order, each chunk
        read by COPY and parsed by Arrow: rows fetched one by one through the driver take
        twice as long (800,000 state rows: 1.3 s on PostgreSQL)."""
        key = self.records.c.record_key
        after: str | None = None
        while True:
            chunk = (stmt if after is None else stmt.where(key > after)).order_by(key)
            table = arrow.select_arrow(conn, chunk.limit(_SCAN), _STATE_COLUMNS)
            if table is None:  # a text the lane cannot read: the driver reads the rest
                rows = conn.execute(chunk).all()
                if rows:
                    yield ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
                return
            if table.num_rows:
                keys = table.column(0).to_pylist()
                yield keys, table.column(1).to_pylist(), table.column(2).to_numpy(
                    zero_copy_only=False)
                after = keys[-1]
            if table.num_rows < _SCAN:
                return

    def save_records(
        self, conn: Connection, rows: Sequence[tuple[str, str, bool]], known: set[str]
    ) -> None:
        """(key, fingerprint, created) for each row; `known` keys already have a state row."""
        r = self.records.c
        new = [
            {"sync_name": self.sync_name, "record_key": k, "fingerprint": fp, "created": c}
            for k, fp, c in rows if k not in known
        ]
        old = [{"k": k, "fp": fp, "c": c} for k, fp, c in rows if k in known]
        if new and pgcopy.usable(conn, new):
            pgcopy.copy_rows(conn, self.records, list(new[0]), new)
        elif new:
            conn.execute(sa.insert(self.records), new)
        if old and pgcopy.usable(conn, old):
            pgcopy.update_rows(
                conn, self.records, ["record_key"], ["fingerprint", "created"],
                [{"record_key": o["k"], "fingerprint": o["fp"], "created": o["c"]}
                 for o in old],
                where={"sync_name": self.sync_name})
        elif old:
            conn.execute(
                sa.update(self.records)
                .where(r.sync_name == self.sync_name, r.record_key == sa.bindparam("k"))
                .values(fingerprint=sa.bindparam("fp"), created=sa.bindparam("c")),
                old,
            )

    def save_new_records(self, conn: Connection, keys: Sequence[str],
                         fingerprints: Sequence[str]) -> None:
        """State rows for records this sync just created (none of them known before)."""
        rows = pa.table({
            "sync_name": pa.array([self.sync_name] * len(keys), pa.string()),
            "record_key": pa.array(keys, pa.string()),
            "fingerprint": pa.array(fingerprints, pa.string()),
            "created": pa.array([True] * len(keys), pa.bool_()),
        })
        arrow.insert(conn, self.records, rows)

    def forget(self, conn: Connection, keys: Sequence[str]) -> None:
        r = self.records.c
        for i in range(0, len(keys), _CHUNK):
            conn.execute(
                sa.delete(self.records).where(
                    r.sync_name == self.sync_name, r.record_key.in_(keys[i : i + _CHUNK])
                )
            )

    # -- seen keys (mirror) ----------------------------------------------------------------
    def start_seen(self, conn: Connection) -> None:
        """An empty table of seen keys for this transaction (see `seen`)."""
        if conn.dialect.name == "duckdb":  # no ON COMMIT DROP: emptied at each start
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.seen.name} "
                                 "(record_key VARCHAR NOT NULL)")
        else:
            self.seen.create(conn, checkfirst=True)
        conn.execute(sa.delete(self.seen))

    def mark_seen(self, conn: Connection, keys: Sequence[str]) -> None:
        """Record keys as seen in the source, in the table `start_seen` made."""
        if len(keys) >= pgcopy.MIN_ROWS:
            arrow.insert(conn, self.seen, pa.table({"record_key": pa.array(keys, pa.string())}))
        elif keys:
            conn.execute(sa.insert(self.seen), [{"record_key": k} for k in keys])

    def unseen_created_keys(self, conn: Connection) -> list[str]:
        """Keys this sync created that the mirror did not see in the source: one anti-join
        (paging it would rescan the records for every page). The mass-delete guard bounds
        how many a run acts on."""
        r, s = self.records.c, self.seen.c
        if conn.dialect.name == "sqlite":  # a hash join is PostgreSQL's; SQLite wants an index
            conn.exec_driver_sql(
                "CREATE INDEX IF NOT EXISTS temp._sync_assets_seen_keys_ix "
                "ON _sync_assets_seen_keys (record_key)")
        elif conn.dialect.name == "postgresql":
            # Without statistics on the new table the planner sorts it (on disk, past
            # work_mem) for a merge join: 1.17 s against 0.41 s hashed, at 800,000 keys.
            conn.exec_driver_sql(f"ANALYZE {self.seen.name}")
        stmt = sa.select(r.record_key).where(
            r.sync_name == self.sync_name, r.created.is_(True),
            ~sa.exists().where(s.record_key == r.record_key),
        ).order_by(r.record_key)
        return [k for (k,) in conn.execute(stmt)]

    def analyze(self, conn: Connection) -> None:
        """Fresh planner statistics for the records table (PostgreSQL): after a bulk load
        the planner would otherwise not know that a record key picks one row."""
        if conn.dialect.name == "postgresql":
            table = conn.dialect.identifier_preparer.format_table(self.records)
            conn.exec_driver_sql(f"ANALYZE {table}")

    def keys_after(self, conn: Connection, after: str | None, limit: int) -> list[str]:
        """The next `limit` record keys of this sync in key order, after `after`."""
        r = self.records.c
        stmt = sa.select(r.record_key).where(r.sync_name == self.sync_name)
        if after is not None:
            stmt = stmt.where(r.record_key > after)
        return list(conn.execute(stmt.order_by(r.record_key).limit(limit)).scalars())

    def reset(self, conn: Connection) -> None:
        """Forget every record and the cursor of this sync (not the change log)."""
        conn.execute(sa.delete(self.records).where(self.records.c.sync_name == self.sync_name))
        self.clear_cursor(conn)

    def has_records(self, conn: Connection) -> bool:
        r = self.records.c
        return conn.execute(sa.select(r.record_key).where(r.sync_name == self.sync_name)
                            .limit(1)).first() is not None

    def count(self, conn: Connection, *, created_only: bool = False) -> int:
        r = self.records.c
        stmt = sa.select(sa.func.count()).where(r.sync_name == self.sync_name)
        if created_only:
            stmt = stmt.where(r.created.is_(True))
        return int(conn.execute(stmt).scalar() or 0)

    # -- failed records -------------------------------------------------------------------
    def failed_records(self, conn: Connection) -> dict[str, FailedRecord]:
        f = self.failed.c
        stmt = sa.select(self.failed).where(f.sync_name == self.sync_name).order_by(
            f.first_failed_at, f.record_id)
        return {row.record_id: FailedRecord(
            row.record_id, tuple(_decode(v) for v in json.loads(row.source_key)), row.code,
            row.message, row.first_failed_at, row.last_failed_at, row.attempts)
            for row in conn.execute(stmt)}

    def save_failed(self, conn: Connection,
                    failures: Sequence[tuple[str, Sequence[Any], str | None, str]]) -> None:
        """(record id, source key values, code, message) of records that failed now: new
        ones added, known ones counted again."""
        if not failures:
            return
        f = self.failed.c
        now = datetime.now(UTC).replace(tzinfo=None)
        ids = [rid for rid, *_ in failures]
        known: dict[str, tuple[datetime, int]] = {}
        for i in range(0, len(ids), _CHUNK):
            known.update({r.record_id: (r.first_failed_at, r.attempts) for r in conn.execute(
                sa.select(f.record_id, f.first_failed_at, f.attempts).where(
                    f.sync_name == self.sync_name, f.record_id.in_(ids[i : i + _CHUNK])))})
        self.clear_failed(conn, list(known))
        conn.execute(sa.insert(self.failed), [{
            "sync_name": self.sync_name, "record_id": rid,
            "source_key": json.dumps([_encode(v) for v in values], default=str), "code": code,
            "message": message[:2000], "first_failed_at": known.get(rid, (now, 0))[0],
            "last_failed_at": now, "attempts": known.get(rid, (now, 0))[1] + 1}
            for rid, values, code, message in failures])

    def clear_failed(self, conn: Connection, record_ids: Sequence[str]) -> None:
        f = self.failed.c
        for i in range(0, len(record_ids), _CHUNK):
            conn.execute(sa.delete(self.failed).where(
                f.sync_name == self.sync_name, f.record_id.in_(record_ids[i : i + _CHUNK])))

    # -- two-way pairs --------------------------------------------------------------------
    def load_pairs(self, conn: Connection) -> dict[str, PairState]:
        p = self.pairs.c
        stmt = sa.select(p.record_key, p.source_fp, p.destination_fp, p.image, p.conflict,
                         p.conflict_source_fp, p.conflict_destination_fp).where(
            p.sync_name == self.sync_name)
        return {
            key: PairState(sfp, dfp, json.loads(image) if image else {}, bool(conflict),
                           csfp, cdfp)
            for key, sfp, dfp, image, conflict, csfp, cdfp in conn.execute(stmt)
        }

    def save_pairs(self, conn: Connection, pairs: dict[str, PairState | None],
                   known: set[str]) -> None:
        """Write pair states; None forgets the record (gone from both sides)."""
        p = self.pairs.c
        gone = [k for k, v in pairs.items() if v is None and k in known]
        for i in range(0, len(gone), _CHUNK):
            conn.execute(sa.delete(self.pairs).where(
                p.sync_name == self.sync_name, p.record_key.in_(gone[i : i + _CHUNK])))
        rows = [
            {"sync_name": self.sync_name, "record_key": k, "source_fp": v.source_fp,
             "destination_fp": v.destination_fp,
             "image": json.dumps(v.image, default=str, ensure_ascii=False),
             "conflict": v.conflict, "conflict_source_fp": v.conflict_source_fp,
             "conflict_destination_fp": v.conflict_destination_fp}
            for k, v in pairs.items() if v is not None
        ]
        old = [r for r in rows if r["record_key"] in known]
        new = [r for r in rows if r["record_key"] not in known]
        if new:
            conn.execute(sa.insert(self.pairs), new)
        for r in old:
            conn.execute(sa.update(self.pairs).where(
                p.sync_name == self.sync_name, p.record_key == r["record_key"]).values(**r))

    def open_conflicts(self, conn: Connection) -> int:
        p = self.pairs.c
        return int(conn.execute(sa.select(sa.func.count()).where(
            p.sync_name == self.sync_name, p.conflict.is_(True))).scalar() or 0)

    # -- change log --------------------------------------------------------------------
    def log_changes(
        self, conn: Connection, run_id: str, changes: Sequence[tuple[str, str, Any, Any]]
    ) -> None:
        if not changes:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        conn.execute(
            sa.insert(self.changes),
            [
                {"sync_name": self.sync_name, "run_id": run_id, "at": now, "operation": op,
                 "record_key": key,
                 "before": self._pack(before), "after": self._pack(after)}
                for op, key, before, after in changes
            ],
        )

    def _pack(self, image: Any) -> str | None:
        if image is None:
            return None
        text = json.dumps(image, default=str, ensure_ascii=False)
        if not self.compress:
            return text
        # optimization.compressionEnabled: what the engine stores is compressed.
        return _ZLIB + base64.b64encode(zlib.compress(text.encode(), 6)).decode()

    def changes_of(self, conn: Connection, run_id: str | None = None) -> list[dict[str, Any]]:
        """The change log (newest last), images decoded, for a run or all runs."""
        c = self.changes.c
        stmt = sa.select(c.run_id, c.at, c.operation, c.record_key, c.before, c.after).where(
            c.sync_name == self.sync_name).order_by(c.id)
        if run_id is not None:
            stmt = stmt.where(c.run_id == run_id)
        return [
            {"run_id": r, "at": at, "operation": op, "record_key": key,
             "before": _unpack(before), "after": _unpack(after)}
            for r, at, op, key, before, after in conn.execute(stmt)
        ]

    def prune_changes(self, conn: Connection, days: int) -> int:
        cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
        c = self.changes.c
        return affected(conn, sa.delete(self.changes).where(
            c.sync_name == self.sync_name, c.at < cutoff))
