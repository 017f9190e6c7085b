"""cloud.userdata_limit: validate, render, plan and up apply the spec's value, and a cloud
whose vm.userdata.max.length is lower stops `up` at its first refusal, saying what to set.

Real: the CLI in-process, the embedded simulator over HTTP (its vm.userdata.max.length
set to 15000 by STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH), the rendered documents.
Simulated: the cloud. With 3 etcd, 1 control and 10 workers the control document is
about 21,000 base64 characters and a worker's about 15,600; etcd's stay under 15,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sf_testkit import Result, Workspace, mutating

CLOUD_LIMIT = 15000
CONCURRENCY = 2
WORKERS = 10


def _spec(ws: Workspace, **cloud: object) -> Path:
    return ws.spec(
        "t1",
        cloud={"concurrency": CONCURRENCY, **cloud},
        roles={"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": WORKERS}},
    )


def _error_line(result: Result) -> str:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_up_stops_at_the_clouds_first_refusal_naming_what_to_set(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH", str(CLOUD_LIMIT))
    result = ws.run("up", "-f", str(_spec(ws)))
    assert result.exit_code == 1
    line = _error_line(result)
    assert "the cloud refused the userdata of t1-control-1 (" in line
    assert f"its limit (vm.userdata.max.length) is {CLOUD_LIMIT}" in line
    assert f"set cloud.userdata_limit: {CLOUD_LIMIT} in the spec" in line
    requests = ws.requests()
    refused = [r for r in requests if r["command"] == "updateVirtualMachine" and r["status"] != 200]
    assert len(refused) == 1  # stopped at the first, not one per node
    # The final documents are written once etcd and control have IPs: the four VMs that
    # needed, and at most one more wave, were deployed; the ten workers were not.
    deploys = [r for r in requests if r["command"] == "deployVirtualMachine"]
    assert len(deploys) <= 4 + CONCURRENCY, len(deploys)


def test_the_spec_limit_makes_validate_plan_and_up_refuse_before_the_cloud(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH", str(CLOUD_LIMIT))
    spec = _spec(ws, userdata_limit=CLOUD_LIMIT)

    validate = ws.run("validate", "-f", str(spec))
    assert validate.exit_code == 2
    line = _error_line(validate)
    assert f"{WORKERS + 1} problem(s)" in line
    assert "t1-control-1: userdata is " in line
    assert f"base64 characters, over cloud.userdata_limit ({CLOUD_LIMIT})" in line
    assert "t1-etcd-1:" not in line

    for command in ("plan", "up"):
        result = ws.run(command, "-f", str(spec))
        assert result.exit_code == 1, (command, result.stderr)
        line = _error_line(result)
        assert "userdata of t1-control-1 is " in line, line
        assert f"over cloud.userdata_limit ({CLOUD_LIMIT}) ({WORKERS + 1} node(s) over)" in line
    assert mutating(ws.requests()) == []


def test_render_reports_the_spec_limit(ws: Workspace) -> None:
    result = ws.run("render", "-f", str(_spec(ws, userdata_limit=CLOUD_LIMIT)), "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = result.json()
    assert {row["limit"] for row in rows} == {CLOUD_LIMIT}
    over = sorted(row["node"] for row in rows if row["base64"] > CLOUD_LIMIT)
    assert len(over) == WORKERS + 1
    assert f"{WORKERS + 1} document(s) over cloud.userdata_limit ({CLOUD_LIMIT})" in result.stderr


def test_a_higher_spec_limit_lets_plan_through(ws: Workspace) -> None:
    """A document over CloudStack's default, on a cloud whose admin raised the setting."""
    import random
    import string

    # Documents are compressed: only a long URL that does not compress makes one big.
    path = "".join(random.Random(16).choices(string.ascii_letters, k=12000))
    mirror = {"base_url": f"http://mirror.example/{path}"}
    refused = ws.run("plan", "-f", str(ws.spec("t1", artifacts=mirror)))
    assert refused.exit_code == 1
    assert "userdata of t1-control-1 is " in _error_line(refused)
    assert "over cloud.userdata_limit (32768)" in _error_line(refused)
    raised = ws.spec("t1", cloud={"userdata_limit": 65536}, artifacts=mirror)
    allowed = ws.run("plan", "-f", str(raised))
    assert allowed.exit_code == 0, allowed.stderr
    assert "create" in allowed.stdout


def test_a_refused_deploy_stops_the_run_the_same_way(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cloud whose limit is below even the small first-boot document refuses the deploy."""
    monkeypatch.setenv("STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH", "1024")
    result = ws.run("up", "-f", str(_spec(ws)))
    assert result.exit_code == 1
    line = _error_line(result)
    assert "the cloud refused the userdata of t1-etcd-" in line
    assert "set cloud.userdata_limit: 1024 in the spec" in line
    deploys = [r for r in ws.requests() if r["command"] == "deployVirtualMachine"]
    assert 1 <= len(deploys) <= CONCURRENCY
    assert all(r["status"] != 200 for r in deploys)
