"""A source that is an upstream Dagster asset's output (`type: dagster_asset`).

A team pushes what its pipeline computed (a pandas DataFrame, an Arrow table) to any
destination without first landing it in a table:

    connectors:
      pipeline: {type: dagster_asset, key: [customer_id]}
    syncs:
      - name: churn_to_crm
        source: {connectorInstanceId: pipeline, externalResource: analytics/churn_scores}
        ...

`externalResource` is the upstream asset's key path (`/` between its parts). The Dagster
layer makes the sync's asset depend on that asset, loads its value through that asset's IO
manager, turns it into an Arrow table and `provide`s the table for the one run; the endpoint
(`connector.py`) reads it like any record set. Outside Dagster (`sync-assets run`) there is
no value to read, and opening the source is a ConnectorError that says so.

This package's import costs only Pydantic: pyarrow loads when a run opens the source. It
never imports Dagster.
"""

from .provided import provide, provided
from .settings import AssetSourceSettings, asset_key_parts, asset_path

__all__ = ["AssetSourceSettings", "asset_key_parts", "asset_path", "provide", "provided"]
