"""Cheap questions about a sync's endpoints, for sensors and metadata: did the source change,
how many rows does the destination hold."""

from __future__ import annotations

import json

from .. import filters as objectql
from ..project import Project
from .endpoints import open_endpoint
from .records import plain


def change_token(project: Project, sync_name: str) -> str:
    """A value that changes when the source's records (within the filter) change.

    With a changeTrackingField: its maximum and the row count (a delete lowers the count).
    Without: what the source offers (SQL: the row count and the largest primary key, which
    sees inserts and deletes only).
    """
    config = project.sync(sync_name).config
    source = open_endpoint(project, config.source)
    filt = objectql.parse_filter(config.source.filters) if config.source.filters else None
    token = source.change_token(filt, config.changeTrackingField)
    return json.dumps(plain(token) if not isinstance(token, list) else [plain(v) for v in token])


def destination_row_count(project: Project, sync_name: str) -> int | None:
    """Rows in the destination now, or None when it does not exist (yet)."""
    config = project.sync(sync_name).config
    return open_endpoint(project, config.destination).count()
