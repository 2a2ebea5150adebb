"""The demo code location: the project under examples/project, or $SYNC_ASSETS_PROJECT."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sync_assets import build_definitions

ROOT = Path(__file__).resolve().parent


def _demo_project() -> Path:
    spec = importlib.util.spec_from_file_location(
        "sync_assets_demo_seed", ROOT / "examples" / "seed.py"
    )
    assert spec and spec.loader
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    seed.ensure_seeded()
    return ROOT / "examples" / "project"


defs = build_definitions(os.environ.get("SYNC_ASSETS_PROJECT") or _demo_project())
