"""MySQL and MariaDB (through PyMySQL or another driver SQLAlchemy knows): what differs from
the other databases the SQL connector writes. A TEXT column cannot be a key (InnoDB indexes at
most 3072 bytes), DATETIME and TIME keep no fractions unless asked, and most driver errors are
OperationalError, so only the codes of a lost connection, a lock wait or a deadlock are
worth retrying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

#: characters of a text key column: 768 utf8mb4 characters fill InnoDB's 3072-byte key
KEY_BYTES = 3072

#: lock wait timeout, deadlock, too many connections, server gone or lost, cannot connect
TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 2003, 2006, 2013, 2055})


def is_mysql(dialect: str) -> bool:
    return dialect in ("mysql", "mariadb")


def created_type(type_: Any, *, key: bool, text_keys: int) -> Any:
    """The column type to create on MySQL for a portable type: text keys as VARCHAR sharing
    the key's byte budget, timestamps and times with microseconds."""
    if key and isinstance(type_, sa.String | sa.Text) and not isinstance(type_, sa.Enum):
        return sa.String(KEY_BYTES // 4 // max(text_keys, 1))
    if isinstance(type_, sa.Float):  # FLOAT(53) alone is refused: a double is what it means
        return mysql.DOUBLE()
    if isinstance(type_, sa.DateTime):
        return mysql.DATETIME(fsp=6, timezone=type_.timezone)
    if isinstance(type_, sa.Time):
        return mysql.TIME(fsp=6)
    return type_


def key_text(length: int) -> Any:
    """Text for a key column of the state tables: VARCHAR on MySQL (see KEY_BYTES)."""
    return sa.Text().with_variant(sa.String(length), "mysql", "mariadb")


def transient_code(exc: BaseException) -> bool:
    args: Sequence[Any] = getattr(getattr(exc, "orig", None), "args", ()) or ()
    return bool(args) and isinstance(args[0], int) and args[0] in TRANSIENT_CODES


def update_rows(conn: Connection, table: sa.Table, key: Sequence[str], columns: Sequence[str],
                rows: Sequence[Mapping[str, Any]]) -> None:
    """Set `columns` of the rows matching each row's `key`: the rows into a temporary table
    shaped like the target (one multi-row INSERT, as PyMySQL sends an executemany), then one
    UPDATE ... JOIN. A row-by-row UPDATE took ten times an insert of the same rows. Temporary
    tables neither commit the transaction nor outlive the session."""
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    name = "_sync_assets_stage"
    names = list(dict.fromkeys([*key, *columns]))
    cols = ", ".join(preparer.quote(c) for c in names)
    conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {preparer.quote(name)}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {preparer.quote(name)} AS "
                         f"SELECT {cols} FROM {target} WHERE 1 = 0")
    stage = sa.table(name, *[sa.column(c) for c in names])
    conn.execute(sa.insert(stage), [{c: r.get(c) for c in names} for r in rows])
    sets = ", ".join(f"d.{preparer.quote(c)} = s.{preparer.quote(c)}" for c in columns)
    conds = " AND ".join(f"d.{preparer.quote(k)} = s.{preparer.quote(k)}" for k in key)
    conn.exec_driver_sql(f"UPDATE {target} AS d JOIN {preparer.quote(name)} AS s ON {conds} "
                         f"SET {sets}")
    conn.exec_driver_sql(f"DROP TEMPORARY TABLE {preparer.quote(name)}")
