"""The stack's Dagster: a run launched from the UI's GraphQL goes through the daemon's queue to the standing code
server, which runs it; and the daemon starts no code server processes of its own (with a `python_module`
workspace it would start a new one at every workspace refresh, each minute, importing the whole project)."""

from __future__ import annotations

from pathlib import Path

from clickrec_platform.settings import Settings
from clickrec_platform.stack import service
from clickrec_platform.stack.dagster_server import graphql
from clickrec_platform_tests.support import wait_for

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }
"""
STATUS = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _post(settings: Settings, query: str, variables: dict) -> dict:
    import httpx

    response = httpx.post(f"{settings.dagster_url}/graphql", json={"query": query, "variables": variables},
                          timeout=30)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _session_members(leader: int) -> list[str]:
    """The command lines of the processes in `leader`'s session (every process the daemon starts stays in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(") ")[2].split()
            if int(stat[3]) == leader and int(entry.name) != leader:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_a_launched_run_is_queued_by_the_daemon_and_run_by_the_standing_code_server(stack: Settings):
    assert service(stack, "dagster-code-server").health().ok
    entries = graphql(stack, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                             "displayMetadata { key value } } } } }")["workspaceOrError"]["locationEntries"]
    (entry,) = entries
    metadata = {m["key"]: m["value"] for m in entry["displayMetadata"]}
    assert entry["loadStatus"] == "LOADED" and metadata.get("port") == str(stack.dagster_code_server_port), metadata

    params = {"selector": {"repositoryLocationName": "clickrec_platform", "repositoryName": "__repository__",
                           "jobName": "observe_silver_events"}, "runConfigData": {}}
    launched = _post(stack, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = wait_for(f"run {run_id} of observe_silver_events to finish (queued, then launched by the daemon)",
                      lambda: (s := _post(stack, STATUS, {"runId": run_id})["runOrError"]["status"]) in FINISHED
                      and s, timeout_s=300, interval_s=1.0)
    assert status == "SUCCESS"

    daemon = service(stack, "dagster-daemon").process().pid()
    assert daemon is not None
    spawned = [cmd for cmd in _session_members(daemon) if "api grpc" in cmd or "code-server" in cmd]
    assert not spawned, f"the daemon started code servers of its own: {spawned}"
