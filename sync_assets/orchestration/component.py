"""`DataSyncComponent`: a project's syncs in a `dg` project's `defs.yaml`.

    type: sync_assets.DataSyncComponent
    attributes:
      project: syncs/          # a file or folder, relative to this defs.yaml
      timezone: Europe/Berlin
      shards: {orders_to_warehouse: 4}   # optional: parallel shards of large syncs
"""

from __future__ import annotations

import dagster as dg

from ..project import load_project
from .definitions import DEFAULT_SENSOR_INTERVAL_SECONDS, build_definitions


class DataSyncComponent(dg.Component, dg.Resolvable, dg.Model):
    """ObjectStack Data Sync Protocol syncs as assets, jobs, schedules and sensors."""

    project: str = "."
    timezone: str = "UTC"
    sensor_interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS
    shards: dict[str, int] = {}

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions(
            load_project(context.path / self.project),
            timezone=self.timezone,
            sensor_interval_seconds=self.sensor_interval_seconds,
            shards=self.shards,
        )
