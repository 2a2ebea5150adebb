"""The protocol page's own examples, as configs in examples/protocol: they load and validate as
they are (secrets from the environment, never printed), and each sync names the systems the
protocol's example does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sync_assets import load_project

from fake_sheets import ServiceAccount

EXAMPLES = Path(__file__).parent.parent / "examples" / "protocol"


def environment() -> dict[str, str]:
    return {
        "OBJECTSTACK_URL": "https://os.example.com", "OBJECTSTACK_API_KEY": "osk_example_key",
        "SALESFORCE_CLIENT_ID": "3MVG9example", "SALESFORCE_CLIENT_SECRET": "sf-secret-9f2c",
        "SALESFORCE_LOGIN_URL": "https://example.my.salesforce.com",
        "GOOGLE_SHEETS_KEY": ServiceAccount.generate().key_json(
            "https://oauth2.googleapis.com/token"),
        "CONTACTS_SPREADSHEET_ID": "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "HUBSPOT_TOKEN": "pat-na1-example-token", "SEGMENT_WRITE_KEY": "segment-write-key-7",
    }


def test_the_protocols_examples_load_with_the_systems_they_name() -> None:
    project = load_project(EXAMPLES, env=environment())
    uses = {name: (s.config.source.connectorInstanceId or f"objectstack.{s.config.source.object}",
                   s.config.destination.connectorInstanceId
                   or f"objectstack.{s.config.destination.object}", s.config.direction)
            for name, s in project.syncs.items()}
    assert uses == {
        "salesforce_contacts_to_sheets": ("salesforce", "sheets", "push"),
        "salesforce_objectstack_contacts": ("salesforce", "objectstack.contact", "bidirectional"),
        "hubspot_companies_to_accounts": ("hubspot", "objectstack.account", "pull"),
        "users_to_segment": ("objectstack.user", "segment", "push"),
    }
    assert {c.type for c in project.connectors.values()} == {
        "salesforce", "google_sheets", "hubspot", "segment"}


def test_validate_passes_on_them_and_prints_no_secret() -> None:
    env = environment()
    done = subprocess.run([sys.executable, "-m", "sync_assets.cli", "validate", str(EXAMPLES)],
                          capture_output=True, text=True, timeout=120,
                          env={**env, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("4 syncs valid") and "notice" not in done.stderr
    for name in ("OBJECTSTACK_API_KEY", "SALESFORCE_CLIENT_SECRET", "HUBSPOT_TOKEN",
                 "SEGMENT_WRITE_KEY"):
        assert env[name] not in done.stdout + done.stderr
