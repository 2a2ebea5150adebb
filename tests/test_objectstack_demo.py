"""The server flavour of the demo (examples/server, scripts/dev-objectstack) runs against the
real ObjectStack server: both syncs load, write exactly the seeded records and, run again,
write nothing."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sync_assets import load_project
from sync_assets.connectors.objectstack_rest import ObjectStackClient
from sync_assets.engine import run

from engine_helpers import counts, rows
from objectstack_harness import (
    ObjectStackServer,
    objectstack_server,  # noqa: F401  (a fixture)
)

ROOT = Path(__file__).resolve().parent.parent


def demo_module() -> object:
    spec = importlib.util.spec_from_file_location("server_demo", ROOT / "examples" /
                                                  "server_demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_server_demo_syncs_the_seeded_records(
        tmp_path: Path, objectstack_server: ObjectStackServer) -> None:  # noqa: F811
    server = objectstack_server
    for name in ("contact", "account"):
        server.reset(name)
    demo_module().seed(server.url, server.api_key, contacts=60)  # type: ignore[attr-defined]
    with ObjectStackClient(server.url, server.api_key) as client:
        wanted = sorted(r["email"] for r in client.list(
            "contact", filter={"status": {"$in": ["active", "lead"]}}, fields=["email"],
            limit=None))
    shutil.copy(ROOT / "examples" / "server" / "project.yaml", tmp_path / "project.yaml")
    env = {"OBJECTSTACK_URL": server.url, "OBJECTSTACK_API_KEY": server.api_key,
           "WAREHOUSE_URL": f"sqlite:///{tmp_path}/wh.db"}
    project = load_project(tmp_path / "project.yaml", env=env)
    contacts = run(project, "server_contacts_to_warehouse")
    assert counts(contacts) == {"processed": len(wanted), "inserted": len(wanted)}
    assert [r[0] for r in rows(f"sqlite:///{tmp_path}/wh.db", "server_contacts", "email")
            ] == wanted
    assert counts(run(project, "server_accounts_mirror")) == {"processed": 8, "inserted": 8}
    assert counts(run(project, "server_contacts_to_warehouse")) == {}
    assert counts(run(project, "server_accounts_mirror")) == {"processed": 8, "skipped": 8}
