"""Conformance: the simulator's answers against real CloudStack answers, field names and JSON
types, for every implemented command that has a recorded response in ../shared/conformance/.

Real: the recorded responses (libcloud's fixtures from real clouds, and cloudstack-go's
captures from CloudStack's own simulator), the simulator over HTTP. Fields present in a
real answer but irrelevant here are listed in TOLERATED with the reason, never skipped
silently. Commands with no recorded answer are printed (and recorded as a user property).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sim_apiclient import Api
from sim_shapes import CONFORMANCE, compare, references

from stackfleet.simulator import Simulator, SimulatorConfig
from stackfleet.simulator.commands import HANDLERS, load_all

pytestmark = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason=f"no {CONFORMANCE}")

# Present in real answers, absent here on purpose: features the simulator does not model.
_PROJECT = {"project", "projectid"}  # no projects
TOLERATED: dict[str, set[str]] = {
    # VM: no ISOs, HA, VNC passwords, guest OS details beyond template, volumes, groups,
    # public IPs (security-group zones), resource icons, or job ids embedded in objects.
    "virtualmachine": {
        "isoid",
        "isoname",
        "isodisplaytext",
        "password",
        "group",
        "groupid",
        "publicip",
        "publicipid",
        "guestosid",
        "rootdeviceid",
        "diskofferingid",
        "diskofferingname",
        "forvirtualnetwork",
        "jobid",
        "jobstatus",
        "bootmode",
        "boottype",
        "userdata",
        "templatetype",
        "pooltype",
        "lastupdated",
        "vgpu",
        "receivedbytes",
        "sentbytes",
        "isolationuri",
        "broadcasturi",
        "hostcontrolstate",
        "readonlydetails",
        "userdataid",
        "userdataname",
        "userdatapolicy",
        "displaynetwork",
        "ip6address",
        "ip6cidr",
        "ip6gateway",
        "vlanid",
        "ipaddresses",
        "nic[].ip6address",
        "affinitygroup[].virtualmachineIds",
        "ostypename",
        "sshkeyenabled",
    },
    "securitygroup": {"virtualmachine"},
    "zone": {
        "capacity",
        "domain",
        "domainid",
        "domainname",
        "guestcidraddress",
        "internaldns2",
        "ip6dns1",
        "ip6dns2",
        "resourcedetails",
        "vlan",
        "hasannotations",
        "type",
        "displaytext",
    },
    "template": {
        "checksum",
        "hostid",
        "hostname",
        "physicalsize",
        "templatetag",
        "sourcetemplateid",
        "removed",
        "url",
        "accountid",
        "childtemplates",
        "parenttemplateid",
        "icon",
        "isrouting",
        "deployasisdetails",
        "userdataid",
        "userdataname",
        "userdatapolicy",
        "userdataparams",
        "hasannotations",
        "bits",
    },
    "serviceoffering": {
        "hosttags",
        "storagetags",
        "networkrate",
        "systemvmtype",
        "tags",
        "domain",
        "domainid",
        "zone",
        "zoneid",
        "deploymentplanner",
        "serviceofferingdetails",
        "cacheMode",
        "vspherestoragepolicy",
        "diskofferingid",
        "diskofferingname",
        "diskofferingdisplaytext",
        "rootdisksize",
        "iscustomizediops",
        "miniops",
        "maxiops",
        "hypervisorsnapshotreserve",
        "diskBytesReadRate",
        "diskBytesWriteRate",
        "diskIopsReadRate",
        "diskIopsWriteRate",
    },
    "network": {
        "vlan",
        "broadcasturi",
        "isolationmethods",
        "physicalnetworkid",
        "account",
        "networkcidr",
        "reservediprange",
        "ip6cidr",
        "ip6gateway",
        "vpcid",
        "aclid",
        "aclname",
        "project",
        "projectid",
        "externalid",
        "sentbytes",
        "receivedbytes",
        "service[].capability",
        "service[].provider[].id",
        "service[].provider[].state",
        "service[].provider[].physicalnetworkid",
        "service[].provider[].destinationphysicalnetworkid",
        "service[].provider[].servicelist",
        "service[].provider[].canenableindividualservice",
        "zonesnetworkspans",
        "icon",
        "ip6dns1",
        "ip6dns2",
        "publicmtu",
        "privatemtu",
        "tungstenvirtualrouteruuid",
        "internetprotocol",
        "ip6routing",
        "egressdefaultpolicy",
        "hasannotations",
        "details",
        "domainid",
        "domain",
        "networkdomain",
        "vpcname",
        "associatednetwork",
        "associatednetworkid",
        "subdomainaccess",
        "canusefordeploy",
    },
    "capability": {
        "customhypervisordisplayname",
        "instancesstatsretentiontime",
        "instancesstatsuseronly",
        "instancesdisksstatsretentiontime",
        "instancesdisksstatsretentiononly",
        "sharedfsvmmincpucount",
    },
    "account": {
        "accountdetails",
        "cpuavailable",
        "cpulimit",
        "cputotal",
        "ipavailable",
        "iplimit",
        "iptotal",
        "memoryavailable",
        "memorylimit",
        "memorytotal",
        "networkavailable",
        "networklimit",
        "networktotal",
        "primarystorageavailable",
        "primarystoragelimit",
        "primarystoragetotal",
        "projectavailable",
        "projectlimit",
        "projecttotal",
        "receivedbytes",
        "sentbytes",
        "secondarystorageavailable",
        "secondarystoragelimit",
        "secondarystoragetotal",
        "snapshotavailable",
        "snapshotlimit",
        "snapshottotal",
        "templateavailable",
        "templatelimit",
        "templatetotal",
        "volumeavailable",
        "volumelimit",
        "volumetotal",
        "vpcavailable",
        "vpclimit",
        "vpctotal",
        "user[].apikey",
        "user[].secretkey",
        "user[].email",
        "user[].firstname",
        "user[].lastname",
        "user[].iscallerchilddomain",
        "user[].timezone",
        "user[].usersource",
        "user[].roleid",
        "user[].rolename",
        "user[].roletype",
    },
    "keypair": {"privatekey", "account", "domain", "domainid", "id"},
    "api": {"description", "related", "since", "type"},
    "job": {"jobinstancetype", "jobinstanceid", "jobresulttype", "jobresult", "completed", "cmd"},
    "resourcelimit": {"resourcetypename"},
    "affinitygroup": {"account", "domain", "domainid", "description", "virtualmachineIds"},
}
_PROJECT_WIDE = _PROJECT | {
    "hasannotations",
    "icon",
    # A free-form details map; CloudStack's simulator hypervisor adds this flag.
    "Message.ReservedCapacityFreed.Flag",
}
# Security-group zones have no public IPs, port forwarding or static NAT: these lists are
# always empty here, and CloudStack answers an empty list as {} (no count, no list).
COMMAND_TOLERATED: dict[str, set[str]] = {
    "listPublicIpAddresses": {"count", "publicipaddress"},
    "listPortForwardingRules": {"count", "portforwardingrule"},
    "listIpForwardingRules": {"count", "ipforwardingrule"},
}


def _scenario(api: Api) -> dict[str, list[dict[str, Any]]]:
    """Exercise every implemented command once; record our inner answers per command."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def call(command: str, **params: Any) -> dict[str, Any]:
        inner = api(command, **params)
        seen.setdefault(command, []).append(inner)
        if "jobid" in inner:
            job = api.wait(inner["jobid"])
            seen.setdefault(f"{command}#job", []).append(job)
            seen.setdefault("queryAsyncJobResult", []).append(job)
        return inner

    zones = call("listZones")["zone"]
    zone = next(z for z in zones if z["name"] == "sim-gva-1")
    template = call("listTemplates", templatefilter="executable", zoneid=zone["id"])["template"]
    offering = call("listServiceOfferings")["serviceoffering"][0]
    call("listNetworks", zoneid=zone["id"])
    call("listCapabilities")
    call("listApis", name="listZones")
    sg = call("createSecurityGroup", name="web")["securitygroup"]
    call(
        "authorizeSecurityGroupIngress",
        securitygroupid=sg["id"],
        protocol="tcp",
        startport=22,
        endport=22,
        cidrlist="0.0.0.0/0",
    )
    rule = call("listSecurityGroups", securitygroupname="web")["securitygroup"][0]["ingressrule"]
    call("createSSHKeyPair", name="generated")
    call(
        "registerSSHKeyPair",
        name="imported",
        publickey=(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        ),
    )
    call("listSSHKeyPairs")
    call("createAffinityGroup", name="spread", type="host anti-affinity")
    call("listAffinityGroups")
    call("listAffinityGroupTypes")
    vm = call(
        "deployVirtualMachine",
        zoneid=zone["id"],
        templateid=template[0]["id"],
        serviceofferingid=offering["id"],
        name="web-1",
        keypair="imported",
        securitygroupids=sg["id"],
        affinitygroupnames="spread",
        userdata=base64.b64encode(b"#cloud-config\n").decode(),
    )
    call(
        "createTags",
        resourcetype="UserVm",
        resourceids=vm["id"],
        **{"tags[0].key": "role", "tags[0].value": "web"},
    )
    call("listTags")
    call("listVirtualMachines")
    call("stopVirtualMachine", id=vm["id"])
    call("updateVirtualMachine", id=vm["id"], displayname="web one")
    call("getVirtualMachineUserData", virtualmachineid=vm["id"])
    call("startVirtualMachine", id=vm["id"])
    call("rebootVirtualMachine", id=vm["id"])
    call("listPublicIpAddresses")
    call("listPortForwardingRules")
    call("listIpForwardingRules")
    call("listResourceLimits")
    call("listAccounts")
    pending = api(
        "deployVirtualMachine",
        zoneid=zone["id"],
        templateid=template[0]["id"],
        serviceofferingid=offering["id"],
        name="slow-1",
    )
    seen["listAsyncJobs"] = [api("listAsyncJobs")]
    api.wait(pending["jobid"])
    call("deleteTags", resourcetype="UserVm", resourceids=vm["id"])
    call("revokeSecurityGroupIngress", id=rule[0]["ruleid"])
    call("destroyVirtualMachine", id=vm["id"], expunge="true")
    call("deleteAffinityGroup", name="spread")
    call("deleteSSHKeyPair", name="generated")
    call("deleteSecurityGroup", name="web")
    return seen


def _tolerated() -> set[str]:
    out = set(_PROJECT_WIDE)
    for prefix, names in TOLERATED.items():
        out |= names
        out |= {f"{prefix}[].{n}" for n in names} | {f"{prefix}.{n}" for n in names}
        out |= {f"jobresult.{prefix}.{n}" for n in names}
    return out


@pytest.fixture(scope="module")
def answers() -> dict[str, list[dict[str, Any]]]:
    latency = {"default": 0.0, "deployVirtualMachine": 0.3}
    with Simulator.start(SimulatorConfig(latency=latency)) as sim:
        return _scenario(Api(sim.endpoint, sim.api_key, sim.secret))


def _ours_for(
    command: str, real: dict[str, Any], answers: dict[str, list[dict[str, Any]]]
) -> dict[str, Any] | None:
    if "jobstatus" in real and f"{command}#job" in answers:
        return answers[f"{command}#job"][0]
    if command == "queryAsyncJobResult":
        wanted = next(iter(real.get("jobresult", {}) or {"": None}))
        for job in answers[command]:
            if wanted in job.get("jobresult", {}):
                return job
        return None
    return next((a for a in answers.get(command, []) if a), answers.get(command, [None])[0])


load_all()


@pytest.mark.parametrize("command", sorted(HANDLERS))
def test_conformance(
    command: str, answers: dict[str, list[dict[str, Any]]], record_property: Any
) -> None:
    refs = references(command)
    if not refs:
        record_property("no_recorded_response", command)
        print(f"no recorded real response for {command}")
        return
    tolerated = _tolerated()
    problems: list[str] = []
    compared = 0
    for source, real in refs:
        ours = _ours_for(command, real, answers)
        if ours is None:
            continue
        compared += 1
        found: list[str] = []
        compare(real, ours, "", tolerated | COMMAND_TOLERATED.get(command, set()), found)
        problems += [f"{source}: {p}" for p in found]
    assert compared, f"nothing of ours to compare with {[s for s, _ in refs]}"
    assert not problems, "\n".join(problems)
