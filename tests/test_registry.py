"""Connector types come from a registry: the built-in ones, and those a package adds through
the entry-point group `sync_assets.connectors` (a real installed distribution's metadata)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from sync_assets import SyncConfigError, load_project
from sync_assets.connectors import ConnectorError, memory, registry
from sync_assets.engine import run
from sync_assets.orchestration.translator import SyncTranslator

from engine_helpers import counts, create_table

PLUGIN = '''
from typing import Literal

from sync_assets.connectors import ConnectorSettingsBase, ConnectorType
from sync_assets.connectors.memory import MemoryTable, store


class PadSettings(ConnectorSettingsBase):
    type: Literal["scratchpad"]
    bucket: str


CONNECTOR = ConnectorType(
    name="scratchpad", settings=PadSettings,
    open=lambda settings, resource, display: MemoryTable(store(settings.bucket), resource,
                                                         display),
    kinds=lambda settings: {"scratchpad"},
    resource_hint="a pad of the bucket",
)
'''


def install(site: Path, name: str, entry: str, module: str | None = None) -> None:
    """A distribution as pip leaves it: a module and its .dist-info with entry points."""
    if module is not None:
        (site / f"{name}.py").write_text(module)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sync_assets.connectors]\n{entry}\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    registry._LOADED = False  # load again, seeing this folder's distributions
    yield folder
    sys.path.remove(str(folder))
    for name in ("pad_plugin", "broken_plugin"):
        sys.modules.pop(name, None)
    registry.unregister("scratchpad")
    registry._LOADED = False


def write(tmp_path: Path, connector: dict[str, object]) -> Path:
    create_table(f"sqlite:///{tmp_path}/os.db", "person", [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text)], [{"id": i, "email": f"p{i}@x.io"} for i in (1, 2, 3)])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "objectstack": {"url": f"sqlite:///{tmp_path}/os.db"},
        "connectors": {"pad": connector},
        "syncs": [{"name": "to_pad", "source": {"object": "person"},
                   "destination": {"connectorInstanceId": "pad", "externalResource": "people",
                                   "operation": "upsert", "matchKey": ["email"]}}]},
        sort_keys=False))
    return path


def test_the_built_in_types_are_registered() -> None:
    assert {"sql", "objectstack", "memory"} <= set(registry.connector_types())


def test_a_package_adds_a_connector_type_by_entry_point(site: Path, tmp_path: Path) -> None:
    install(site, "pad_plugin", "scratchpad = pad_plugin:CONNECTOR", PLUGIN)
    project = load_project(write(tmp_path, {"type": "scratchpad", "bucket": "b1"}), env={})
    assert counts(run(project, "to_pad")) == {"processed": 3, "inserted": 3}
    assert [r["email"] for r in memory.store("b1").records("people")] == [
        "p1@x.io", "p2@x.io", "p3@x.io"]
    assert SyncTranslator(project).get_kinds(project.sync("to_pad")) == {"objectstack",
                                                                          "scratchpad"}
    memory.drop_store("b1")


def test_a_plugins_settings_are_validated_with_file_line_and_path(
        site: Path, tmp_path: Path) -> None:
    install(site, "pad_plugin", "scratchpad = pad_plugin:CONNECTOR", PLUGIN)
    with pytest.raises(SyncConfigError) as caught:
        load_project(write(tmp_path, {"type": "scratchpad", "buckt": "b1"}), env={})
    assert str(caught.value).splitlines() == [
        f"{tmp_path}/p.yaml:4: connectors.pad.bucket: is required",
        f"{tmp_path}/p.yaml:6: connectors.pad.buckt: unknown key (check the spelling)",
    ]


def test_a_broken_plugin_is_one_clear_error(site: Path) -> None:
    install(site, "broken_plugin", "nothing = broken_plugin_missing:CONNECTOR")
    with pytest.raises(ConnectorError) as caught:
        registry.connector_types()
    assert str(caught.value) == textwrap.dedent("""\
        connector plugin 'nothing' (broken_plugin_missing:CONNECTOR) failed to load: \
ModuleNotFoundError: No module named 'broken_plugin_missing'""")
