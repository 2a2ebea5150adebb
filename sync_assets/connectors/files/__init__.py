"""The files connector (`type: files`): CSV, JSON Lines and Parquet files under any fsspec URL
(local, S3, GCS, Azure), read as Arrow datasets and written by atomic replacement.

settings.py holds the settings (Pydantic only); connector.py the endpoint, imported on first
use so that pyarrow and fsspec load only when a project opens files.
"""

from __future__ import annotations

from .settings import FilesSettings, kinds

__all__ = ["FilesSettings", "kinds"]
