"""End to end: `dagster dev` on a loopback port runs a sync's job launched through GraphQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dagster_helpers import ROOT, demo_copy

LAUNCH = """
mutation($selector: JobOrPipelineSelector!) {
  launchPipelineExecution(executionParams: {selector: $selector, mode: "default"}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN_STATUS = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""
LAST_MATERIALIZATION = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}"""

LINEAGE = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { isMaterializable groupName dependedByKeys { path } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[int]:
    project = demo_copy(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "examples" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNC_ASSETS_PROJECT": str(project)}
    dagster = str(Path(sys.executable).parent / "dagster")
    log = (tmp_path / "dagster-dev.log").open("w")
    # Its own process group: `dagster dev` in the background ignores SIGTERM otherwise.
    proc = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("dagster dev did not start:\n"
                                + (tmp_path / "dagster-dev.log").read_text()[-3000:])
                time.sleep(0.5)
        yield port
    finally:
        # Ctrl-C, as a user stops it: SIGTERM to the group left it waiting 30 s every time
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_a_sync_job_launched_through_graphql_materializes_with_metadata(dagster_dev: int) -> None:
    port = dagster_dev
    selector = {"repositoryLocationName": "sync_assets_demo", "repositoryName": "__repository__",
                "jobName": "sync__accounts_mirror__job"}
    deadline = time.monotonic() + 60
    while True:  # the code location may still be loading
        launched = graphql(port, LAUNCH, {"selector": selector})["launchPipelineExecution"]
        if launched["__typename"] == "LaunchRunSuccess" or time.monotonic() > deadline:  # type: ignore[index]
            break
        time.sleep(1)
    assert launched["__typename"] == "LaunchRunSuccess", launched  # type: ignore[index]
    run_id = launched["run"]["runId"]  # type: ignore[index]
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = graphql(port, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]  # type: ignore[index]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    asset = graphql(port, LAST_MATERIALIZATION, {"key": {"path": ["warehouse", "crm_accounts"]}})
    (materialization,) = asset["assetOrError"]["assetMaterializations"]  # type: ignore[index]
    assert materialization["runId"] == run_id
    entries = {e["label"]: e.get("intValue", e.get("text"))
               for e in materialization["metadataEntries"]}
    assert entries["status"] == "completed"
    # the demo's active accounts in de, fr, gb and us (the realtime sensor of another sync
    # runs on its own meanwhile; this sync has only a nightly schedule)
    assert entries["recordsInserted"] == 19
    assert entries["recordsProcessed"] == 19
    assert entries["dagster/row_count"] == 19
    # the lineage: each source object is an external asset with an edge to its sync's asset
    for source, readers in ((["objectstack", "contact"], {"warehouse/crm_contacts",
                                                          "objectstack/vip_contact"}),
                            (["objectstack", "account"], {"warehouse/crm_accounts"}),
                            (["objectstack", "order"], {"warehouse/orders"})):
        node = graphql(port, LINEAGE, {"key": {"path": source}})["assetNodeOrError"]
        assert node["isMaterializable"] is False and node["groupName"] == "sources"  # type: ignore[index]
        assert {"/".join(k["path"]) for k in node["dependedByKeys"]} == readers  # type: ignore[index]
