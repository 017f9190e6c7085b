"""Issue 16 (hardening): machine tags repaired by every run, /etc/hosts that does not
depend on the deploy batch, and host-gw refused before anything is created.

Real: the stackfleet CLI in-process, the embedded simulator over HTTP (signed requests,
SQLite state), a second simulator on the same state file to change tags behind the
CLI's back (as a killed run or an operator would leave them) and to read userdata back
(getVirtualMachineUserData). Simulated: the cloud.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from sf_testkit import Workspace, mutating

from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.cloudstack.credentials import Credentials
from stackfleet.simulator import Simulator, SimulatorConfig

QUICKSTART = {"etcd": {"count": 3}, "control": {"count": 1}, "workers": {"count": 5}}
CLUSTER, ROLE, EXPIRES, BOOT = (
    "stackfleet:cluster",
    "stackfleet:role",
    "stackfleet:expires",
    "stackfleet:bootstrap",
)


class Cloud:
    """The CLI's cloud seen from outside: a second simulator on its state file."""

    def __init__(self, ws: Workspace) -> None:
        self.sim = Simulator.start(
            SimulatorConfig(state_path=ws.home / "simulator" / "state.sqlite")
        )
        self.api = CloudStackAPI(
            Credentials(self.sim.endpoint, self.sim.api_key, self.sim.secret, "test")
        )

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sim.stop()

    def vms(self) -> list[dict[str, Any]]:
        return self.api.list_all("listVirtualMachines", "virtualmachine")

    def tag_job(self, command: str, vm_ids: list[str], tags: dict[str, str]) -> None:
        params: dict[str, str] = {"resourcetype": "UserVm", "resourceids": ",".join(vm_ids)}
        for i, (key, value) in enumerate(sorted(tags.items())):
            params[f"tags[{i}].key"] = key
            params[f"tags[{i}].value"] = value
        jobid = self.api.call(command, params)["jobid"]
        # Done when the job is (the jobs of two calls may otherwise run in either order).
        while self.api.call("queryAsyncJobResult", {"jobid": jobid})["jobstatus"] == 0:
            time.sleep(0.02)


def _tags(vm: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in vm.get("tags", []) or []}


def _role(name: str) -> str:
    return name.rsplit("-", 2)[1]


def test_lost_machine_tags_show_in_plan_and_up_repairs_them(ws: Workspace) -> None:
    spec = ws.spec("tg", roles=QUICKSTART, ttl="2h")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    with Cloud(ws) as cloud:
        vms = {vm["name"]: vm for vm in cloud.vms()}
        # What a run killed between deploy and tags leaves: only the bootstrap tag.
        bare = ["tg-etcd-2", "tg-control-1", "tg-worker-3", "tg-worker-5"]
        gone = {k: v for k, v in _tags(vms["tg-etcd-2"]).items() if k != BOOT}
        cloud.tag_job("deleteTags", [vms[n]["id"] for n in bare], gone)
        # And a wrong role (an operator's slip: a tag is written once, so delete, create),
        # and a missing expiry.
        cloud.tag_job("deleteTags", [vms["tg-worker-1"]["id"]], {ROLE: ""})
        cloud.tag_job("createTags", [vms["tg-worker-1"]["id"]], {ROLE: "etcd"})
        cloud.tag_job("deleteTags", [vms["tg-etcd-1"]["id"]], {EXPIRES: ""})
    damaged = {*bare, "tg-worker-1", "tg-etcd-1"}

    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert [c["machines"] for c in listed.json() if c["name"] == "tg"] == [5]

    plan = ws.run("plan", "-f", str(spec), "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    actions = plan.json()["actions"]
    assert {a["name"] for a in actions if a["verb"] == "tag"} == damaged, actions
    assert all(a["verb"] == "tag" and a["kind"] == "machine" for a in actions), actions
    worker1 = next(a for a in actions if a["name"] == "tg-worker-1")
    assert worker1["detail"] == "stackfleet:role=worker"

    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    with Cloud(ws) as cloud:
        vms = {vm["name"]: vm for vm in cloud.vms()}
        sgs = cloud.api.list_all(
            "listSecurityGroups", "securitygroup", {"securitygroupname": "tg-etcd"}
        )
    expiry = _tags(sgs[0])[EXPIRES]
    assert len(vms) == 9
    for name, vm in vms.items():
        want = {CLUSTER: "tg", ROLE: _role(name), EXPIRES: expiry, BOOT: "done"}
        assert _tags(vm) == want, (name, _tags(vm))
    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert [c["machines"] for c in listed.json() if c["name"] == "tg"] == [9]
    again = ws.run("plan", "-f", str(spec), "-o", "json")
    assert again.json()["actions"] == []


def test_a_run_stopped_between_deploy_and_tags_is_repaired_by_the_next(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically what a kill between a deploy and its tag call leaves."""
    small = {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}}
    assert ws.run("up", "-f", str(ws.spec("ts", roles=small))).exit_code == 0
    spec = ws.spec("ts", roles={**small, "workers": {"count": 4}})
    # Groups and rules exist and are tagged: the first tag call is the new VMs'. It fails
    # every time, so the run stops with the workers deployed and untagged.
    monkeypatch.setenv("STACKFLEET_SIMULATOR_FAULTS", "http5xx=1,seed=1")
    monkeypatch.setenv("STACKFLEET_SIMULATOR_FAULT_COMMANDS", "createTags")
    stopped = ws.run("up", "-f", str(spec))
    assert stopped.exit_code == 1, stopped.stderr
    monkeypatch.delenv("STACKFLEET_SIMULATOR_FAULTS")
    with Cloud(ws) as cloud:
        untagged = [vm["name"] for vm in cloud.vms() if CLUSTER not in _tags(vm)]
    assert untagged, "the stopped run should have left untagged VMs"

    up = ws.run("up", "-f", str(spec))
    assert up.exit_code == 0, up.stderr
    with Cloud(ws) as cloud:
        vms = cloud.vms()
    assert len(vms) == 6
    for vm in vms:
        want = {CLUSTER: "ts", ROLE: _role(vm["name"]), BOOT: "done"}
        assert _tags(vm) == want, (vm["name"], _tags(vm))
    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert [c["machines"] for c in listed.json() if c["name"] == "ts"] == [6]


def test_a_fresh_cluster_has_every_tag_and_a_second_up_changes_nothing(ws: Workspace) -> None:
    spec = ws.spec(
        "tf",
        roles={"etcd": {"count": 1}, "workers": {"count": 2}, "control": {"count": 1}},
        ttl="1h",
    )
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    with Cloud(ws) as cloud:
        for vm in cloud.vms():
            assert set(_tags(vm)) == {CLUSTER, ROLE, EXPIRES, BOOT}, vm["name"]
    before = len(ws.requests())
    second = ws.run("up", "-f", str(spec), "-o", "json")
    assert second.json()["changed"] is False
    assert mutating(ws.requests()[before:]) == []


def _hosts(document: str) -> str:
    """The /etc/hosts content of a rendered document (cloud-config YAML, either flavor)."""
    import gzip

    import yaml

    for entry in yaml.safe_load(document)["write_files"]:
        if entry["path"] == "/etc/hosts":
            if entry.get("encoding") == "gz+b64":
                return gzip.decompress(base64.b64decode(entry["content"])).decode()
            return str(entry["content"])
    raise AssertionError("no /etc/hosts in the document")


def test_hosts_do_not_depend_on_the_deploy_batch_and_render_from_cloud_matches(
    ws: Workspace, tmp_path: Path
) -> None:
    # Two VMs per deploy wave: the nine nodes land in five batches.
    spec = ws.spec("hb", roles=QUICKSTART, cloud={"concurrency": 2})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    with Cloud(ws) as cloud:
        deployed = {}
        for vm in cloud.vms():
            body = cloud.api.call("getVirtualMachineUserData", {"virtualmachineid": vm["id"]})
            deployed[vm["name"]] = base64.b64decode(
                body["virtualmachineuserdata"]["userdata"]
            ).decode()
            ip = vm["nic"][0]["ipaddress"]
            hosts = _hosts(deployed[vm["name"]])
            # Its own name and nothing of its peers: the same shape on every node.
            assert hosts == f"127.0.0.1 localhost\n::1 localhost\n{ip} {vm['name']}\n", hosts
    out = tmp_path / "rendered"
    rendered = ws.run("render", "-f", str(spec), "--from-cloud", "--out", str(out))
    assert rendered.exit_code == 0, rendered.stderr
    assert len(deployed) == 9
    for name, text in deployed.items():
        assert (out / f"{name}.yaml").read_text() == text, name


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_host_gw_is_refused_in_one_line_before_anything_is_created(
    ws: Workspace, command: str
) -> None:
    spec = ws.spec("gw", network={"flannel_backend": "host-gw"})
    result = ws.run(command, "-f", str(spec))
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "network.flannel_backend" in lines[0] and "anti-spoofing" in lines[0]
    assert "use vxlan" in lines[0]
    assert mutating(ws.requests(), succeeded_only=True) == []
