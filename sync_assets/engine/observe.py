"""Cheap questions about a sync's endpoints, for sensors and metadata: did the source change,
how many rows does the destination hold."""

from __future__ import annotations

import json

import sqlalchemy as sa

from .. import filters as objectql
from ..project import Project
from .endpoints import open_endpoint
from .records import plain


def change_token(project: Project, sync_name: str) -> str:
    """A value that changes when the source's records (within the filter) change.

    With a changeTrackingField: its maximum and the row count (a delete lowers the count).
    Without: the row count and the largest primary key, which sees inserts and deletes only.
    """
    config = project.sync(sync_name).config
    source = open_endpoint(project, config.source)
    table = source.table()
    filt = objectql.parse_filter(config.source.filters) if config.source.filters else None
    stmt = sa.select(sa.func.count())
    ctf = config.changeTrackingField
    if ctf:
        stmt = sa.select(sa.func.count(), sa.func.max(source.column(ctf)))
    elif table.primary_key.columns:
        stmt = sa.select(sa.func.count(), sa.func.max(next(iter(table.primary_key.columns))))
    stmt = stmt.select_from(table)
    if filt is not None:
        stmt = stmt.where(objectql.compile_filter(filt, dict(table.c)))
    try:
        with source.engine.connect() as conn:
            row = conn.execute(stmt).one()
    except sa.exc.DBAPIError as exc:
        raise source.error(exc, "reading") from None
    return json.dumps([plain(v) for v in row])


def destination_row_count(project: Project, sync_name: str) -> int | None:
    """Rows in the destination now, or None when it does not exist (yet)."""
    config = project.sync(sync_name).config
    dest = open_endpoint(project, config.destination)
    table = dest.reflect(refresh=True)
    if table is None:
        return None
    try:
        with dest.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
    except sa.exc.DBAPIError as exc:
        raise dest.error(exc, "counting") from None
