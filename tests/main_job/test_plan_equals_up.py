"""`plan` shows what `up` then does: compared with the simulator's request log.

For each scenario, `plan -o json` runs first (it must change nothing), then `up --yes`;
every mutating call `up` sends must belong to an action `plan` listed, and every action
`plan` listed must show up as its call. Also: `plan --detailed-exitcode`, `up` refusing
to destroy without --yes, and every spec change a running cluster cannot take.

Real: the CLI, the simulator over signed HTTP, its request log. Simulated: the VMs.
"""

from __future__ import annotations

from typing import Any

import pytest
from sf_testkit import Workspace, mutating

from stackfleet.simulator import Simulator, SimulatorConfig

# (verb, kind) of a plan action -> the API calls that may carry it out; the first one
# must be among them.
CALLS: dict[tuple[str, str], tuple[str, ...]] = {
    ("create", "ssh-key"): ("registerSSHKeyPair",),
    ("replace", "ssh-key"): ("deleteSSHKeyPair", "registerSSHKeyPair"),
    ("create", "group"): ("createSecurityGroup", "createTags"),
    ("create", "rule"): ("authorizeSecurityGroupIngress", "createTags"),
    ("delete", "rule"): ("revokeSecurityGroupIngress",),
    ("change", "rule"): ("createTags",),
    ("create", "spread-group"): ("createAffinityGroup",),
    ("delete", "machine"): ("destroyVirtualMachine", "expungeVirtualMachine"),
    ("create", "machine"): (
        "deployVirtualMachine",
        "updateVirtualMachine",
        "startVirtualMachine",
        "stopVirtualMachine",
        "rebootVirtualMachine",
        "createTags",
    ),
    ("tag", "machine"): ("createTags", "deleteTags"),
    ("bootstrap", "machine"): ("updateVirtualMachine", "startVirtualMachine", "createTags"),
    ("start", "machine"): ("startVirtualMachine",),
    ("tag", "cluster"): ("createTags", "deleteTags"),
    ("tag", "group"): ("createTags", "deleteTags"),
}


def up_calls(requests: list[dict[str, Any]]) -> list[str]:
    """Mutating calls, without the run's lock (a security group taken and deleted)."""
    out = []
    for r in requests:
        if r.get("status") != 200 or r["command"] not in mutating([r]):
            continue
        name = str((r.get("params") or {}).get("name", ""))
        if r["command"] == "createSecurityGroup" and name.endswith("-lock"):
            continue
        if r["command"] == "deleteSecurityGroup":  # only the lock: up deletes no group
            continue
        out.append(r["command"])
    return out


def shown(action: dict[str, str]) -> tuple[str, ...]:
    if action["kind"] == "cluster":
        return (action["verb"], action["kind"], action["name"], tag_keys(action["detail"]))
    return (action["verb"], action["kind"], action["name"], action["detail"])


def tag_keys(detail: str) -> str:
    return ",".join(sorted(pair.split("=")[0] for pair in detail.split(", ")))


def plan_then_up(ws: Workspace, spec: Any) -> list[dict[str, str]]:
    """Plan, check it changed nothing, run up --yes, and compare the two."""
    before = len(ws.requests())
    plan = ws.run("plan", "-f", str(spec), "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    assert mutating(ws.requests()[before:]) == []
    actions: list[dict[str, str]] = plan.json()["actions"]
    before = len(ws.requests())
    up = ws.run("up", "-f", str(spec), "-o", "json", "--yes")
    assert up.exit_code == 0, up.stderr
    # up acted on what plan printed (a CA that plan shows as "(new)", up has just made).
    assert [shown(a) for a in up.json()["actions"]] == [shown(a) for a in actions]
    calls = up_calls(ws.requests()[before:])
    allowed = {c for a in actions for c in CALLS[(a["verb"], a["kind"])]}
    assert set(calls) <= allowed, (sorted(set(calls) - allowed), actions)
    for a in actions:
        assert CALLS[(a["verb"], a["kind"])][0] in calls, a
    count = {k: sum(1 for a in actions if (a["verb"], a["kind"]) == k) for k in CALLS}
    assert calls.count("deployVirtualMachine") == count[("create", "machine")]
    assert calls.count("destroyVirtualMachine") == count[("delete", "machine")]
    assert calls.count("createSecurityGroup") == count[("create", "group")]
    assert calls.count("registerSSHKeyPair") == (
        count[("create", "ssh-key")] + count[("replace", "ssh-key")]
    )
    # And then there is nothing left to do.
    again = ws.run("plan", "-f", str(spec), "-o", "json", "--detailed-exitcode")
    assert again.exit_code == 0, (again.stderr, again.stdout)
    return actions


def sim_call(ws: Workspace, command: str, params: dict[str, Any]) -> Any:
    """One API call by hand (the operator's console), on the CLI's simulator state."""
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.credentials import Credentials

    sim = Simulator.start(SimulatorConfig(state_path=ws.home / "simulator" / "state.sqlite"))
    try:
        api = CloudStackAPI(Credentials(sim.endpoint, sim.api_key, sim.secret, "test"))
        if command.startswith("list"):
            return api.list_all(command, params.pop("_key"), params)  # type: ignore[attr-defined]
        body = api.call(command, params)  # type: ignore[attr-defined]
        while "jobid" in body:  # done when the job is (no clock: the job decides)
            job = api.call("queryAsyncJobResult", {"jobid": body["jobid"]})  # type: ignore[attr-defined]
            if job.get("jobstatus") != 0:
                assert job["jobstatus"] == 1, job
                break
        return body
    finally:
        sim.stop()


def group_named(ws: Workspace, name: str) -> Any:
    """The security group of that name, as the cloud lists it."""
    listed = sim_call(
        ws, "listSecurityGroups", {"_key": "securitygroup", "securitygroupname": name}
    )
    return listed[0]


def set_group_tag_by_hand(ws: Workspace, group_id: str, key: str, value: str) -> None:
    """An operator's change of a group tag's value: CloudStack writes a tag once, so the
    old one is deleted, then the new one created."""
    where = {"resourcetype": "SecurityGroup", "resourceids": group_id}
    sim_call(ws, "deleteTags", {**where, "tags[0].key": key})
    sim_call(ws, "createTags", {**where, "tags[0].key": key, "tags[0].value": value})


def kinds(actions: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(a["verb"], a["kind"]) for a in actions}


def test_fresh_noop_scale_up_and_scale_down_as_planned(ws: Workspace) -> None:
    spec = ws.spec("pu")
    fresh = plan_then_up(ws, spec)
    assert ("create", "ssh-key") in kinds(fresh) and ("tag", "cluster") in kinds(fresh)
    assert sum(1 for a in fresh if a["kind"] == "machine") == 6
    # A re-run: nothing planned, nothing sent.
    before = len(ws.requests())
    assert plan_then_up(ws, spec) == []
    assert mutating(ws.requests()[before:]) == []
    bigger = ws.spec("pu", roles={"workers": {"count": 4}})
    grown = plan_then_up(ws, bigger)
    assert [a["name"] for a in grown if a["kind"] == "machine"] == ["pu-worker-3", "pu-worker-4"]
    smaller = ws.spec("pu", roles={"workers": {"count": 1}})
    shrunk = plan_then_up(ws, smaller)
    assert sorted((a["verb"], a["name"]) for a in shrunk) == [
        ("delete", "pu-worker-2"),
        ("delete", "pu-worker-3"),
        ("delete", "pu-worker-4"),
    ]


def test_without_yes_and_without_a_terminal_up_destroys_nothing(ws: Workspace) -> None:
    spec = ws.spec("ask")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    # (etcd 3 -> 1 is refused before any question here: see test_plan_equals_up_etcd.py)
    for smaller in (ws.spec("ask", roles={"workers": {"count": 0}}),):
        before = len(ws.requests())
        up = ws.run("up", "-f", str(smaller))
        assert up.exit_code == 2
        error = up.stderr.strip().splitlines()[-1]
        assert error.startswith("error: Destroy 2 VM(s) (ask-")
        assert error.endswith("refusing without --yes (no terminal to ask)")
        assert mutating(ws.requests()[before:]) == []
    # Creating asks nothing.
    assert ws.run("up", "-f", str(ws.spec("ask", roles={"workers": {"count": 3}}))).exit_code == 0


def test_a_lost_key_pair_a_revoked_rule_and_lost_tags_are_planned(ws: Workspace) -> None:
    spec = ws.spec("rep", roles={"etcd": {"count": 1}, "workers": {"count": 1}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    sim_call(ws, "deleteSSHKeyPair", {"name": "rep-key"})
    assert kinds(plan_then_up(ws, spec)) == {("create", "ssh-key")}

    groups = sim_call(
        ws, "listSecurityGroups", {"_key": "securitygroup", "securitygroupname": "rep-worker"}
    )
    rule = groups[0]["ingressrule"][0]
    sim_call(ws, "revokeSecurityGroupIngress", {"id": rule["ruleid"]})
    assert kinds(plan_then_up(ws, spec)) == {("create", "rule")}

    vms = sim_call(ws, "listVirtualMachines", {"_key": "virtualmachine", "keyword": "rep"})
    etcd = group_named(ws, "rep-etcd")
    vm = next(v for v in vms if v["name"] == "rep-worker-1")
    sim_call(
        ws,
        "deleteTags",
        {"resourcetype": "UserVm", "resourceids": vm["id"], "tags[0].key": "stackfleet:role"},
    )
    sim_call(
        ws,
        "deleteTags",
        {
            "resourcetype": "SecurityGroup",
            "resourceids": etcd["id"],
            "tags[0].key": "stackfleet:kubernetes-version",
            "tags[1].key": "stackfleet:ca-kube",
        },
    )
    actions = plan_then_up(ws, spec)
    assert kinds(actions) == {("tag", "machine"), ("tag", "cluster")}
    cluster = next(a for a in actions if a["kind"] == "cluster")
    assert "stackfleet:kubernetes-version=1.31.4" in cluster["detail"]
    assert "stackfleet:ca-kube=" in cluster["detail"]


def test_a_key_pair_registered_from_elsewhere_is_replaced_as_planned(ws: Workspace) -> None:
    spec = ws.spec("rk", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    # Another operator's key under the cluster's key name.
    from stackfleet.pki import new_ssh_host_key

    sim_call(ws, "deleteSSHKeyPair", {"name": "rk-key"})
    other = new_ssh_host_key().public_openssh
    sim_call(ws, "registerSSHKeyPair", {"name": "rk-key", "publickey": other})
    assert kinds(plan_then_up(ws, spec)) == {("replace", "ssh-key")}


def test_detailed_exitcode(ws: Workspace) -> None:
    spec = ws.spec("dx", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    pending = ws.run("plan", "-f", str(spec), "--detailed-exitcode")
    assert pending.exit_code == 2 and "plan for dx" in pending.stdout
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    assert ws.run("plan", "-f", str(spec), "--detailed-exitcode").exit_code == 0
    bad = ws.spec("dx", roles={"etcd": {"count": 1}, "workers": {"count": 0}},
                  kubernetes={"version": "1.99.0"})  # fmt: skip
    failed = ws.run("plan", "-f", str(bad), "--detailed-exitcode")
    assert failed.exit_code == 1
    assert failed.stderr.strip().startswith("error: kubernetes.version")
    assert len(failed.stderr.strip().splitlines()) == 1
    # Without the flag, bad input keeps its exit code 2.
    assert ws.run("plan", "-f", str(bad)).exit_code == 2


def test_plan_fails_where_up_fails(ws: Workspace) -> None:
    unsupported = ws.spec("pf", kubernetes={"version": "1.99.0"})
    too_many = ws.spec("pf2", roles={"workers": {"count": 30}})  # 34 VMs, limit 20
    for spec, code, start in (
        (unsupported, 2, "error: kubernetes.version: '1.99.0' has no pinned checksums"),
        (too_many, 1, "error: the account may create 20 more VM(s) but the cluster needs 34"),
    ):
        plan = ws.run("plan", "-f", str(spec))
        up = ws.run("up", "-f", str(spec))
        assert (plan.exit_code, up.exit_code) == (code, code)
        assert plan.stderr.strip().startswith(start), plan.stderr
        assert up.stderr.strip().splitlines()[-1] == plan.stderr.strip()
    assert mutating(ws.requests()) == []


REFUSED = [
    (
        {"roles": {"workers": {"count": 2, "offering": "Medium"}}},
        "error: roles.workers.offering: Large -> Medium on 2 worker(s) (sc-worker-1, "
        "sc-worker-2): changing a machine's offering is not supported yet; scale "
        "roles.workers.count to 0 and back, or keep Large",
    ),
    (
        {"roles": {"control": {"count": 1, "template": "Ubuntu 24.04 LTS"}}},
        "error: roles.control.template: Flatcar Container Linux stable -> Ubuntu 24.04 LTS",
    ),
    ({"kubernetes": {"version": "1.33.5"}}, "error: kubernetes.version: 1.31.4 -> 1.33.5: "),
    ({"os": "ubuntu"}, "error: os: flatcar -> ubuntu: "),
    ({"network": {"pod_cidr": "10.50.0.0/16"}}, "error: network.pod_cidr: 10.244.0.0/16 -> "),
    ({"network": {"service_cidr": "10.97.0.0/16"}}, "error: network.service_cidr: 10.96.0.0/12"),
    # Made at etcd's default timing (not recorded as a tag: a cluster without it runs that).
    (
        {"etcd": {"heartbeat_ms": 500, "election_timeout_ms": 5000}},
        "error: etcd.heartbeat_ms: 100 -> 500: etcd reads its timing when a member starts",
    ),
]


@pytest.mark.parametrize(("change", "start"), REFUSED, ids=lambda v: str(v)[:30])
def test_a_spec_change_the_cluster_cannot_take_is_refused(
    ws: Workspace, change: dict[str, Any], start: str
) -> None:
    base = {"roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 2}}}
    assert ws.run("up", "-f", str(ws.spec("sc", **base))).exit_code == 0
    roles = {**base["roles"], **change.get("roles", {})}
    changed = ws.spec("sc", **{**change, "roles": roles})
    before = len(ws.requests())
    for command in (["plan"], ["up", "--yes"]):
        result = ws.run(*command, "-f", str(changed))
        assert result.exit_code == 2, result.stdout
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith(start), line
    assert mutating(ws.requests()[before:]) == []


def test_a_cluster_recorded_with_another_flannel_backend_is_refused(ws: Workspace) -> None:
    # host-gw cannot be asked for in these zones (the spec refuses it): a cluster recorded
    # with it stands for one made by another version of stackfleet.
    spec = ws.spec("fb", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    group = group_named(ws, "fb-etcd")
    set_group_tag_by_hand(ws, group["id"], "stackfleet:flannel-backend", "host-gw")
    before = len(ws.requests())
    plan = ws.run("plan", "-f", str(spec))
    assert plan.exit_code == 2
    assert plan.stderr.strip() == (
        "error: network.flannel_backend: host-gw -> vxlan: changing a running cluster's "
        "flannel backend is not supported yet; keep host-gw (or make a new cluster with "
        "`down` and `up`)"
    )
    assert mutating(ws.requests()[before:]) == []


def test_a_cluster_without_recorded_settings_is_accepted_and_tagged(ws: Workspace) -> None:
    spec = ws.spec("old", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    group = group_named(ws, "old-etcd")
    keys = ["kubernetes-version", "os", "pod-cidr", "service-cidr", "flannel-backend"]
    params = {f"tags[{i}].key": f"stackfleet:{k}" for i, k in enumerate(keys)}
    sim_call(ws, "deleteTags", {"resourcetype": "SecurityGroup", "resourceids": group["id"],
                                **params})  # fmt: skip
    # A cluster made before the settings were recorded, now asked for another version:
    # nothing to compare with, so it is accepted as it is and recorded.
    actions = plan_then_up(ws, spec)
    assert kinds(actions) == {("tag", "cluster")}
    newer = ws.spec("old", roles={"etcd": {"count": 1}, "workers": {"count": 0}},
                    kubernetes={"version": "1.33.5"})  # fmt: skip
    refused = ws.run("plan", "-f", str(newer))
    assert refused.exit_code == 2 and "kubernetes.version: 1.31.4 -> 1.33.5" in refused.stderr


def test_a_cluster_made_with_tuned_etcd_timing_records_it_and_keeps_it(ws: Workspace) -> None:
    """etcd timing other than the defaults is recorded on the cluster; plan = up then,
    and going back to the defaults on the running cluster is refused, nothing changed."""
    tuned = {"heartbeat_ms": 500, "election_timeout_ms": 5000}
    spec = ws.spec("et", roles={"etcd": {"count": 1}, "workers": {"count": 0}}, etcd=tuned)
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    group = group_named(ws, "et-etcd")
    tags = {t["key"]: t["value"] for t in group.get("tags", [])}
    assert tags["stackfleet:etcd-heartbeat-ms"] == "500"
    assert tags["stackfleet:etcd-election-timeout-ms"] == "5000"
    assert ws.run("plan", "-f", str(spec), "--detailed-exitcode").exit_code == 0
    default = ws.spec("et", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    before = len(ws.requests())
    refused = ws.run("plan", "-f", str(default))
    assert refused.exit_code == 2
    assert (
        refused.stderr.strip()
        .splitlines()[0]
        .startswith("error: etcd.heartbeat_ms: 500 -> 100: etcd reads its timing")
    )
    assert mutating(ws.requests()[before:]) == []


def test_a_group_left_without_its_tags_is_tagged_as_planned(ws: Workspace) -> None:
    """A run killed between creating a security group and tagging it (two calls) leaves
    it bare: `list`, which finds clusters by their etcd group's tags, lost the cluster
    (CI's kill trials hit it). The next plan shows the tags; up puts them back."""
    spec = ws.spec("bare", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    group = group_named(ws, "bare-etcd")
    sim_call(ws, "deleteTags", {"resourcetype": "SecurityGroup", "resourceids": group["id"],
                                "tags[0].key": "stackfleet:cluster",
                                "tags[1].key": "stackfleet:role"})  # fmt: skip
    listed = ws.run("list", "--profile", "simulator", "-o", "json").json()
    assert [c for c in listed if c["name"] == "bare"] == []
    actions = plan_then_up(ws, spec)
    assert kinds(actions) == {("tag", "group")}
    assert actions[0]["name"] == "bare-etcd"
    listed = ws.run("list", "--profile", "simulator", "-o", "json").json()
    assert [c["machines"] for c in listed if c["name"] == "bare"] == [2]  # etcd, control


def test_a_group_whose_role_tag_was_changed_by_hand_gets_its_own_back(ws: Workspace) -> None:
    """A group tag with a wrong value: CloudStack writes a tag once (createTags over a key
    the group has fails), so up takes the wrong one away, then writes the right one."""
    spec = ws.spec("hand", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    group = group_named(ws, "hand-etcd")
    set_group_tag_by_hand(ws, group["id"], "stackfleet:role", "worker")
    actions = plan_then_up(ws, spec)
    assert kinds(actions) == {("tag", "group")}
    group = group_named(ws, "hand-etcd")
    assert {t["key"]: t["value"] for t in group["tags"]}["stackfleet:role"] == "etcd"
