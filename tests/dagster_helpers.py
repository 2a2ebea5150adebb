"""Builders shared by the Dagster tests: a private copy of the demo project."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_seed_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_seed", ROOT / "examples" / "seed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_copy(tmp_path: Path) -> Path:
    """examples/project copied under tmp_path, with a freshly seeded datastore beside it."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "project", project)
    load_seed_module().ensure_seeded(tmp_path / "data")
    return project
