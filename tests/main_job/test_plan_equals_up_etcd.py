"""etcd member-count changes on the simulator: `plan` and `up` refuse alike, and send nothing.

The simulator's VMs run nothing, so etcd's member API cannot be asked: a change of a formed
cluster's etcd members is refused in one line that says so, by `plan` and `up` alike,
before any mutating call. (The membership steps themselves run against a real etcd in
tests/etcd_cluster/test_membership_real.py.)

Real: the CLI, the simulator over signed HTTP, its request log. Simulated: the VMs.
"""

from __future__ import annotations

import pytest
from sf_testkit import Workspace, mutating
from test_plan_equals_up import plan_then_up, sim_call

UNREACHABLE = (
    "error: roles.etcd.count: changing etcd's members ({have} -> {n}) needs etcd's member API, and "
    "etcd cannot be reached: the simulator's VMs run nothing (hypervisor Simulator), so no "
    "member can be asked; nothing was changed"
)


def refused_alike(ws: Workspace, spec: object) -> str:
    """plan and up --yes fail with the same one line, and nothing mutating is sent."""
    before = len(ws.requests())
    lines = []
    for command in (["plan"], ["up", "--yes"]):
        result = ws.run(*command, "-f", str(spec))
        assert result.exit_code == 2, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines.append(result.stderr.strip().splitlines()[-1])
    assert lines[0] == lines[1], lines
    assert mutating(ws.requests()[before:]) == []
    return lines[0]


@pytest.mark.parametrize("target", [1, 5])
def test_a_formed_clusters_etcd_count_change_is_refused_without_etcd(
    ws: Workspace, target: int
) -> None:
    spec = ws.spec("ec", roles={"etcd": {"count": 3}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    changed = ws.spec("ec", roles={"etcd": {"count": target}, "workers": {"count": 0}})
    assert refused_alike(ws, changed) == UNREACHABLE.format(have=3, n=target)


def test_three_to_two_is_refused_as_even(ws: Workspace) -> None:
    spec = ws.spec("ev", roles={"etcd": {"count": 3}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    line = refused_alike(ws, ws.spec("ev", roles={"etcd": {"count": 2}, "workers": {"count": 0}}))
    assert line.startswith("error: ") and "roles.etcd.count: 2 is even" in line


def test_a_lost_member_is_not_recreated_as_a_new_cluster(ws: Workspace) -> None:
    """Before: `up` re-created it rendered `new` (same IP, empty data): "already bootstrapped"."""
    spec = ws.spec("lm", roles={"etcd": {"count": 3}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    vms = sim_call(ws, "listVirtualMachines", {"_key": "virtualmachine", "keyword": "lm"})
    lost = next(v for v in vms if v["name"] == "lm-etcd-2")
    sim_call(ws, "destroyVirtualMachine", {"id": lost["id"], "expunge": "true"})
    assert refused_alike(ws, spec) == UNREACHABLE.format(have=2, n=3)


def test_a_first_cluster_is_still_created_as_planned(ws: Workspace) -> None:
    spec = ws.spec("fc", roles={"etcd": {"count": 3}, "workers": {"count": 0}})
    actions = plan_then_up(ws, spec)
    assert not [a for a in actions if a["kind"] == "etcd-member"]
    assert sum(1 for a in actions if (a["verb"], a["kind"]) == ("create", "machine")) == 4
