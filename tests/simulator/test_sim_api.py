"""The simulator's API semantics over real HTTP on loopback, with real SQLite (in memory).

Real: the HTTP server, signatures (HMAC-SHA1 as CloudStack's ApiServer computes them),
SQLite state, job timing from wall-clock timestamps. Simulated: the cloud itself (no
hypervisor; VMs are rows).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from sim_apiclient import Api

from stackfleet.simulator import Simulator, SimulatorConfig


def test_unknown_command_is_401_like_cloudstack(api: Api) -> None:
    status, body = api.raw("doesNotExist")
    assert status == 401
    assert body == {
        "doesnotexistresponse": {
            "uuidList": [],
            "errorcode": 401,
            "errortext": "unable to verify user credentials and/or request signature",
        }
    }


def test_missing_required_parameter_is_431_9999(api: Api) -> None:
    status, body = api.raw("listTemplates")
    assert status == 431
    inner = body["listtemplatesresponse"]
    assert inner["cserrorcode"] == 9999 and inner["errorcode"] == 431
    assert inner["errortext"].endswith("due to missing parameter templatefilter")


def test_unknown_id_is_431_4350(api: Api) -> None:
    status, body = api.raw("startVirtualMachine", id="5c8e9a8e-0000-4000-8000-000000000000")
    assert status == 431
    assert body["startvirtualmachineresponse"]["cserrorcode"] == 4350


def test_malformed_number_is_431(api: Api) -> None:
    status, body = api.raw("listZones", page="x", pagesize="2")
    assert status == 431 and body["listzonesresponse"]["cserrorcode"] == 9999


def test_async_job_lifecycle_and_list_async_jobs() -> None:
    cfg = SimulatorConfig(latency={"default": 0.0, "deployVirtualMachine": 0.6})
    with Simulator.start(cfg) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        resp = api.deploy("sim-gva-1", wait=False, name="web-1")
        assert set(resp) == {"id", "jobid"}
        pending = api("queryAsyncJobResult", jobid=resp["jobid"])
        assert pending["jobstatus"] == 0 and "jobresult" not in pending
        listed = api("listAsyncJobs")
        assert [j["jobid"] for j in listed["asyncjobs"]] == [resp["jobid"]]
        vm = api("listVirtualMachines", id=resp["id"])["virtualmachine"][0]
        assert vm["state"] == "Starting"
        # A second job on the same VM starts only when the first has finished.
        stop = api("stopVirtualMachine", id=resp["id"])
        time.sleep(0.65)
        done = api("queryAsyncJobResult", jobid=resp["jobid"])
        assert done["jobstatus"] == 1
        assert done["jobresult"]["virtualmachine"]["state"] == "Running"
        assert api("listAsyncJobs") == {}  # finished jobs drop out
        stopped = api.wait(stop["jobid"])
        assert stopped["jobresult"]["virtualmachine"]["state"] == "Stopped"


def test_basic_zone_ip_chosen_at_first_start_and_kept(api: Api) -> None:
    resp = api.deploy("sim-gva-1", wait=False, name="b1", startvm="false")
    api.wait(resp["jobid"])
    vm = api("listVirtualMachines", id=resp["id"])["virtualmachine"][0]
    assert vm["state"] == "Stopped" and "ipaddress" not in vm["nic"][0]
    started = api.wait(api("startVirtualMachine", id=resp["id"])["jobid"])
    ip = started["jobresult"]["virtualmachine"]["nic"][0]["ipaddress"]
    assert ip.startswith("10.11.")
    api.wait(api("stopVirtualMachine", id=resp["id"])["jobid"])
    again = api.wait(api("startVirtualMachine", id=resp["id"])["jobid"])
    assert again["jobresult"]["virtualmachine"]["nic"][0]["ipaddress"] == ip


def test_advanced_zone_ip_allocated_at_deploy_pinning_and_taken(api: Api) -> None:
    resp = api.deploy("sim-zrh-1", wait=False, name="a1", startvm="false")
    vm = api("listVirtualMachines", id=resp["id"])["virtualmachine"][0]
    assert vm["nic"][0]["ipaddress"].startswith("10.12.")
    pinned = api.deploy("sim-zrh-1", name="a2", startvm="false", ipaddress="10.12.0.50")
    assert pinned["nic"][0]["ipaddress"] == "10.12.0.50"
    zones, template, offerings = api.ids()
    status, body = api.raw(
        "deployVirtualMachine",
        zoneid=zones["sim-zrh-1"],
        templateid=template,
        serviceofferingid=offerings["Small"],
        name="a3",
        ipaddress="10.12.0.50",
    )
    assert status == 533
    assert body["deployvirtualmachineresponse"]["cserrorcode"] == 4320


def test_duplicate_name_refused(api: Api) -> None:
    api.deploy("sim-gva-1", name="dup")
    zones, template, offerings = api.ids()
    status, body = api.raw(
        "deployVirtualMachine",
        zoneid=zones["sim-gva-1"],
        templateid=template,
        serviceofferingid=offerings["Small"],
        name="dup",
    )
    assert status == 431 and "already exists" in body["deployvirtualmachineresponse"]["errortext"]


def test_host_anti_affinity_fails_job_with_533_when_hosts_run_out() -> None:
    with Simulator.start(SimulatorConfig(hosts=2)) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        group = api("createAffinityGroup", name="etcd", type="host anti-affinity")
        assert api.wait(group["jobid"])["jobstatus"] == 1
        hosts = {
            api.deploy("sim-gva-1", name=f"e{i}", affinitygroupnames="etcd")["hostid"]
            for i in range(2)
        }
        assert len(hosts) == 2
        resp = api.deploy("sim-gva-1", wait=False, name="e2", affinitygroupnames="etcd")
        job = api.wait(resp["jobid"])
        assert job["jobstatus"] == 2 and job["jobresultcode"] == 533
        assert job["jobresult"]["errorcode"] == 533
        assert "Unable to create a deployment for" in job["jobresult"]["errortext"]
        assert api("listVirtualMachines", id=resp["id"])["virtualmachine"][0]["state"] == "Error"


def test_vm_limit_535_and_account_headroom() -> None:
    with Simulator.start(SimulatorConfig(vm_limit=2)) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        for i in range(2):
            api.deploy("sim-gva-1", name=f"v{i}", startvm="false")
        account = api("listAccounts")["account"][0]
        assert (account["vmlimit"], account["vmtotal"], account["vmavailable"]) == ("2", 2, "0")
        limit = api("listResourceLimits", resourcetype=0)["resourcelimit"]
        assert limit[0]["max"] == 2
        zones, template, offerings = api.ids()
        status, body = api.raw(
            "deployVirtualMachine",
            zoneid=zones["sim-gva-1"],
            templateid=template,
            serviceofferingid=offerings["Small"],
        )
        assert status == 535
        assert body["deployvirtualmachineresponse"]["cserrorcode"] == 4370


def test_userdata_get_cap_and_post_cap(api: Api) -> None:
    zones, template, offerings = api.ids()
    base: dict[str, Any] = {
        "zoneid": zones["sim-gva-1"],
        "templateid": template,
        "serviceofferingid": offerings["Small"],
    }
    big = base64.b64encode(b"x" * 3072).decode()  # exactly 4096 base64 characters
    status, body = api.raw("deployVirtualMachine", name="g1", userdata=big, **base)
    assert status == 431
    assert body["deployvirtualmachineresponse"]["errortext"] == (
        "User data is too long for an http GET request"
    )
    status, body = api.raw(
        "deployVirtualMachine",
        method="POST",
        body_keys=("userdata",),
        name="p1",
        userdata=big,
        **base,
    )
    assert status == 200
    vm_id = body["deployvirtualmachineresponse"]["id"]
    got = api("getVirtualMachineUserData", virtualmachineid=vm_id)["virtualmachineuserdata"]
    assert got["userdata"] == big
    huge = base64.b64encode(b"x" * 24579).decode()  # 32772 characters > 32768
    status, body = api.raw(
        "deployVirtualMachine",
        method="POST",
        body_keys=("userdata",),
        name="p2",
        userdata=huge,
        **base,
    )
    assert status == 431
    assert body["deployvirtualmachineresponse"]["errortext"] == (
        "User data has exceeded configurable max length : 32768"
    )


def test_update_userdata_while_stopped(api: Api) -> None:
    vm = api.deploy("sim-zrh-1", name="u1", startvm="false")
    data = base64.b64encode(b"#cloud-config\n").decode()
    api("updateVirtualMachine", id=vm["id"], userdata=data)
    got = api("getVirtualMachineUserData", virtualmachineid=vm["id"])
    assert got["virtualmachineuserdata"]["userdata"] == data


def test_tags_filter_vms_and_security_group_rules(api: Api) -> None:
    a = api.deploy("sim-gva-1", name="t1")
    api.deploy("sim-gva-1", name="t2")
    job = api(
        "createTags",
        resourcetype="UserVm",
        resourceids=a["id"],
        **{"tags[0].key": "stackfleet:cluster", "tags[0].value": "demo"},
    )
    assert api.wait(job["jobid"])["jobresult"] == {"success": True}
    found = api(
        "listVirtualMachines", **{"tags[0].key": "stackfleet:cluster", "tags[0].value": "demo"}
    )
    assert [v["name"] for v in found["virtualmachine"]] == ["t1"]
    assert found["virtualmachine"][0]["tags"][0]["resourcetype"] == "UserVm"
    sg = api("createSecurityGroup", name="etcd")["securitygroup"]
    auth = api(
        "authorizeSecurityGroupIngress",
        securitygroupid=sg["id"],
        protocol="tcp",
        startport=2379,
        endport=2380,
        **{
            "usersecuritygrouplist[0].account": "stackfleet",
            "usersecuritygrouplist[0].group": "etcd",
        },
    )
    rule = api.wait(auth["jobid"])["jobresult"]["securitygroup"]["ingressrule"][0]
    assert rule["securitygroupname"] == "etcd"
    api.wait(
        api(
            "createTags",
            resourcetype="SecurityGroupRule",
            resourceids=rule["ruleid"],
            **{"tags[0].key": "stackfleet:rule", "tags[0].value": "etcd-peer"},
        )["jobid"]
    )
    listed = api("listSecurityGroups", securitygroupname="etcd")["securitygroup"][0]
    assert listed["ingressrule"][0]["tags"][0]["value"] == "etcd-peer"
    # A duplicate rule is skipped; with nothing new the job fails as CloudStack's does.
    dup = api(
        "authorizeSecurityGroupIngress",
        securitygroupid=sg["id"],
        protocol="tcp",
        startport=2379,
        endport=2380,
        **{
            "usersecuritygrouplist[0].account": "stackfleet",
            "usersecuritygrouplist[0].group": "etcd",
        },
    )
    assert api.wait(dup["jobid"])["jobstatus"] == 2


def test_a_tag_is_written_once_and_a_failed_create_writes_nothing(api: Api) -> None:
    """CloudStack's resource_tags is unique on (resource, type, key), case-blind, and
    createTags writes all its pairs in one transaction (TaggedResourceManagerImpl)."""
    vm = api.deploy("sim-gva-1", name="w1")

    def tag(**pairs: str) -> dict[str, Any]:
        params = {}
        for i, (key, value) in enumerate(pairs.items()):
            params[f"tags[{i}].key"], params[f"tags[{i}].value"] = key, value
        job = api("createTags", resourcetype="UserVm", resourceids=vm["id"], **params)
        return api.wait(job["jobid"])

    def tags() -> dict[str, str]:
        listed = api("listVirtualMachines", id=vm["id"])["virtualmachine"][0]
        return {t["key"]: t["value"] for t in listed["tags"]}

    assert tag(expires="2030")["jobstatus"] == 1
    refused = tag(EXPIRES="2031", other="x")  # another value, the key in other case
    assert refused["jobstatus"] == 2
    assert refused["jobresult"]["errortext"] == f"tag EXPIRES already on UserVm with id {vm['id']}"
    assert tags() == {"expires": "2030"}, "nothing of the failed job was written"
    gone = api(
        "deleteTags", resourcetype="UserVm", resourceids=vm["id"], **{"tags[0].key": "Expires"}
    )
    assert api.wait(gone["jobid"])["jobstatus"] == 1
    assert tag(expires="2031", other="x")["jobstatus"] == 1
    assert tags() == {"expires": "2031", "other": "x"}


def test_pagination_counts_all_and_pages(api: Api) -> None:
    for i in range(5):
        api.deploy("sim-gva-1", name=f"p{i}", startvm="false")
    page = api("listVirtualMachines", page=2, pagesize=2)
    assert page["count"] == 5
    assert [v["name"] for v in page["virtualmachine"]] == ["p2", "p3"]
    assert api("listVirtualMachines", name="nope") == {}


def test_destroy_expunge_removes_vm(api: Api) -> None:
    vm = api.deploy("sim-gva-1", name="gone")
    job = api.wait(api("destroyVirtualMachine", id=vm["id"], expunge="true")["jobid"])
    assert job["jobstatus"] == 1
    assert api("listVirtualMachines", name="gone") == {}


@pytest.mark.parametrize("limit", [3])
def test_rate_limit_429(limit: int) -> None:
    with Simulator.start(SimulatorConfig(rate_limit=limit)) as sim:
        api = Api(sim.endpoint, sim.api_key, sim.secret)
        statuses = [api.raw("listZones") for _ in range(limit + 1)]
        status, body = statuses[-1]
        assert [s for s, _ in statuses[:-1]] == [200] * limit
        assert status == 429
        inner = body["listzonesresponse"]
        assert inner["errorcode"] == 429 and inner["cserrorcode"] == 9999
        assert inner["errortext"].startswith(
            "The given user has reached his/her account api limit, please retry after "
        )
        assert inner["errortext"].endswith(" ms.")
