"""Cheap questions about a sync's endpoints, for sensors and metadata: did the side it reads
change, how many rows does the destination hold, what are its columns' types."""

from __future__ import annotations

import json

from .. import filters as objectql
from ..project import Project
from .direction import flows, reversed_config
from .endpoints import open_endpoint
from .records import plain


def change_token(project: Project, sync_name: str) -> str:
    """A value that changes when the records the sync reads change: the source's (within
    its filter) for a push, the destination side's for a pull, both for a two-way sync.

    With a change-tracking field: its maximum and the row count (a delete lowers the count).
    Without: what the system offers (SQL: the row count and the largest primary key, which
    sees inserts and deletes only).
    """
    config = project.sync(sync_name).config
    tokens = []
    for read, _ in flows(config):
        if read == "source":
            filt = objectql.parse_filter(config.source.filters) if config.source.filters else None
            ctf = config.changeTrackingField
        else:  # read backwards: no filter (it names the other side), the cursor's rename
            filt, ctf = None, reversed_config(config).changeTrackingField
        token = open_endpoint(project, getattr(config, read)).change_token(filt, ctf)
        tokens.append([plain(v) for v in token] if isinstance(token, list) else plain(token))
    return json.dumps(tokens[0] if len(tokens) == 1 else tokens)


def destination_row_count(project: Project, sync_name: str) -> int | None:
    """Rows in the destination now, or None when it does not exist (yet) or cannot say."""
    config = project.sync(sync_name).config
    endpoint = open_endpoint(project, config.destination)
    return endpoint.count() if endpoint.capabilities.countable else None


def written_columns(project: Project, sync_name: str) -> list[tuple[str, str]] | None:
    """(name, type) of each column of the side the sync writes, as that system describes
    it (a SQL type such as `NUMERIC(12, 2)`, else the portable kind); None when it does not
    exist (yet)."""
    config = project.sync(sync_name).config
    _read, written = flows(config)[0]
    description = open_endpoint(project, getattr(config, written)).describe()
    if not description.exists:
        return None
    out = []
    for name, info in description.fields.items():
        try:
            shown = str(info.type) if info.type is not None else info.kind
        except Exception:  # a type without a generic rendering
            shown = info.kind
        out.append((name, shown or info.kind))
    return out
