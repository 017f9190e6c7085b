"""Response objects in CloudStack's shapes (field names and JSON types as the real API has them).

Every function takes stored documents and returns the dict CloudStack would serialise;
the conformance test compares these against recorded real responses.
"""

from __future__ import annotations

from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator.hypervisor import SIMULATED

Obj = dict[str, Any]


def owner() -> Obj:
    return {"account": cat.ACCOUNT, "domainid": cat.DOMAIN_ID, "domain": cat.DOMAIN}


def tag(t: Obj) -> Obj:
    return {
        "key": t["key"],
        "value": t["value"],
        "resourcetype": t["resourcetype"],
        "resourceid": t["resourceid"],
        **owner(),
    }


def zone(z: cat.Zone) -> Obj:
    return {
        "id": z.id,
        "name": z.name,
        "description": f"Simulated {z.networktype.lower()} zone",
        "dns1": "9.9.9.9",
        "dns2": "1.1.1.1",
        "internaldns1": z.network.gateway,
        "networktype": z.networktype,
        "securitygroupsenabled": True,
        "allocationstate": "Enabled",
        "zonetoken": cat.stable_id("zonetoken", z.name),
        "dhcpprovider": "VirtualRouter" if z.networktype == "Advanced" else "DhcpServer",
        "localstorageenabled": False,
        "tags": [],
    }


def template(t: cat.Template, z: cat.Zone) -> Obj:
    return {
        "id": t.id,
        "name": t.name,
        "displaytext": t.name,
        "ispublic": True,
        "created": cat.CREATED,
        "isready": True,
        "passwordenabled": False,
        "format": "QCOW2",
        "isfeatured": True,
        "crossZones": False,
        "ostypeid": t.ostypeid,
        "ostypename": t.ostypename,
        "account": "system",
        "zoneid": z.id,
        "zonename": z.name,
        "status": "Download Complete",
        "size": t.size,
        "templatetype": "USER",
        "hypervisor": "KVM",
        "domain": cat.DOMAIN,
        "domainid": cat.DOMAIN_ID,
        "isextractable": False,
        "bootable": True,
        "sshkeyenabled": False,
        "isdynamicallyscalable": False,
        "requireshvm": True,
        "directdownload": False,
        "deployasis": False,
        "details": {},
        "downloaddetails": [],
        "tags": [],
    }


def offering(o: cat.Offering) -> Obj:
    return {
        "id": o.id,
        "name": o.name,
        "displaytext": o.displaytext,
        "cpunumber": o.cpunumber,
        "cpuspeed": o.cpuspeed,
        "memory": o.memory,
        "created": cat.CREATED,
        "storagetype": "shared",
        "provisioningtype": "thin",
        "offerha": False,
        "limitcpuuse": False,
        "isvolatile": False,
        "issystem": False,
        "defaultuse": False,
        "iscustomized": False,
        "dynamicscalingenabled": True,
        "diskofferingstrictness": False,
        "encryptroot": False,
        "hasannotations": False,
    }


def network(z: cat.Zone) -> Obj:
    n = z.network
    return {
        "id": n.id,
        "name": n.name,
        "displaytext": n.name,
        "broadcastdomaintype": "Vlan" if z.networktype == "Advanced" else "Native",
        "traffictype": "Guest",
        "gateway": n.gateway,
        "netmask": str(n.net.netmask),
        "cidr": n.cidr,
        "zoneid": z.id,
        "zonename": z.name,
        "networkofferingid": cat.stable_id("networkoffering", n.name),
        "networkofferingname": "DefaultSharedNetworkOfferingWithSGService",
        "networkofferingdisplaytext": "Offering for Shared Security group enabled networks",
        "networkofferingconservemode": True,
        "networkofferingavailability": "Optional",
        "issystem": False,
        "state": "Setup",
        "related": n.id,
        "dns1": "9.9.9.9",
        "dns2": "1.1.1.1",
        "type": n.type,
        "acltype": "Domain",
        "domainid": cat.DOMAIN_ID,
        "domain": cat.DOMAIN,
        "service": [
            {"name": "SecurityGroup", "provider": [{"name": "SecurityGroupProvider"}]},
            {"name": "UserData", "provider": [{"name": "VirtualRouter"}]},
            {"name": "Dhcp", "provider": [{"name": "VirtualRouter"}]},
            {"name": "Dns", "provider": [{"name": "VirtualRouter"}]},
        ],
        "networkdomain": "cs-sim.internal",
        "canusefordeploy": True,
        "isshared": True,
        "securitygroupenabled": True,
        "startip": n.candidates()[0],
        "endip": n.candidates()[-1],
        "ispersistent": False,
        "isdefault": True,
        "specifyipranges": True,
        "restartrequired": False,
        "displaynetwork": True,
        "redundantrouter": False,
        "strechedl2subnet": False,
        "supportsvmautoscaling": False,
        "subdomainaccess": True,
        "tags": [],
    }


def rule(r: Obj, tags: list[Obj]) -> Obj:
    out: Obj = {"ruleid": r["id"], "protocol": r["protocol"]}
    if r["protocol"] == "icmp":
        out["icmptype"] = r["icmptype"]
        out["icmpcode"] = r["icmpcode"]
    elif r["protocol"] in ("tcp", "udp"):
        out["startport"] = r["startport"]
        out["endport"] = r["endport"]
    if r.get("cidr"):
        out["cidr"] = r["cidr"]
    else:
        out["securitygroupname"] = r["securitygroupname"]
        out["account"] = r["account"]
    out["tags"] = tags
    return out


def security_group(sg: Obj, rules: list[Obj], tags: list[Obj], vm_ids: list[str]) -> Obj:
    return {
        "id": sg["id"],
        "name": sg["name"],
        "description": sg.get("description") or sg["name"],
        **owner(),
        "ingressrule": rules,
        "egressrule": [],
        "tags": tags,
        "virtualmachinecount": len(vm_ids),
        "virtualmachineids": vm_ids,
    }


def keypair(k: Obj) -> Obj:
    return {"id": k["id"], "name": k["name"], **owner(), "fingerprint": k["fingerprint"]}


def affinity_group(g: Obj, vm_ids: list[str]) -> Obj:
    return {
        "id": g["id"],
        "name": g["name"],
        "description": g.get("description") or g["name"],
        **owner(),
        "type": g["type"],
        "virtualmachineIds": vm_ids,
    }


def nic(vm: Obj, z: cat.Zone) -> Obj:
    n = z.network
    out: Obj = {
        "id": vm["nicid"],
        "networkid": n.id,
        "networkname": n.name,
        "netmask": str(n.net.netmask),
        "gateway": n.gateway,
        "traffictype": "Guest",
        "type": n.type,
        "isdefault": True,
        "macaddress": vm["macaddress"],
        "secondaryip": [],
        "extradhcpoption": [],
    }
    if vm.get("ipaddress"):
        out["ipaddress"] = vm["ipaddress"]
    if z.networktype == "Advanced":
        out["broadcasturi"] = "vlan://untagged"
        out["isolationuri"] = "vlan://untagged"
    return out


def virtual_machine(vm: Obj, state: str, sgs: list[Obj], ags: list[Obj], tags: list[Obj]) -> Obj:
    z = cat.zone_by_id(vm["zoneid"])
    t = cat.template_by_id(vm["templateid"])
    o = cat.offering_by_id(vm["serviceofferingid"])
    assert z is not None and t is not None and o is not None  # ids were checked at deploy
    out: Obj = {
        "id": vm["id"],
        "name": vm["name"],
        "displayname": vm["displayname"],
        "account": cat.ACCOUNT,
        "userid": cat.USER_ID,
        "username": cat.ACCOUNT,
        "domainid": cat.DOMAIN_ID,
        "domain": cat.DOMAIN,
        "created": vm["created"],
        "state": state,
        "haenable": False,
        "zoneid": z.id,
        "zonename": z.name,
        "templateid": t.id,
        "templatename": t.name,
        "templatedisplaytext": t.name,
        "passwordenabled": False,
        "serviceofferingid": o.id,
        "serviceofferingname": o.name,
        "cpunumber": o.cpunumber,
        "cpuspeed": o.cpuspeed,
        "memory": o.memory,
        "cpuused": "0%",
        "networkkbsread": 0,
        "networkkbswrite": 0,
        "diskkbsread": 0,
        "diskkbswrite": 0,
        "memorykbs": 0,
        "memoryintfreekbs": 0,
        "memorytargetkbs": 0,
        "diskioread": 0,
        "diskiowrite": 0,
        "guestosid": t.ostypeid,
        "rootdeviceid": 0,
        "rootdevicetype": "ROOT",
        "securitygroup": sgs,
        "nic": [nic(vm, z)],
        "hypervisor": vm.get("hypervisor", SIMULATED),
        "instancename": vm["instancename"],
        "details": {},
        "affinitygroup": ags,
        "displayvm": True,
        "isdynamicallyscalable": False,
        "ostypeid": t.ostypeid,
        "osdisplayname": t.ostypename,
        "tags": tags,
    }
    if vm.get("hostindex") is not None and state in ("Running", "Stopping", "Starting"):
        out["hostid"] = cat.host_id(z, vm["hostindex"])
        out["hostname"] = cat.host_name(z, vm["hostindex"])
    if vm.get("keypair"):
        out["keypair"] = vm["keypair"]
        out["keypairs"] = vm["keypair"]
    return out


def vm_security_group(sg: Obj) -> Obj:
    # A VM's embedded security group carries the group's identity, not its rules.
    return {
        "id": sg["id"],
        "name": sg["name"],
        "description": sg.get("description") or sg["name"],
        "account": cat.ACCOUNT,
        "ingressrule": [],
        "egressrule": [],
        "tags": [],
    }


def vm_affinity_group(g: Obj) -> Obj:
    return {
        "id": g["id"],
        "name": g["name"],
        "description": g.get("description") or g["name"],
        "type": g["type"],
        **owner(),
    }


GIB = 1 << 30


def root_volume_size(vm: Obj) -> int:
    """Bytes: `rootdisksize` (GB) when deploy gave one, else the template's size."""
    if vm.get("rootdisksize"):
        return int(vm["rootdisksize"]) * GIB
    t = cat.template_by_id(vm["templateid"])
    assert t is not None
    return t.size


def volume(vm: Obj, vmstate: str) -> Obj:
    """A VM's ROOT volume (VolumeResponse): named ROOT-<vm number>, on shared primary storage."""
    z = cat.zone_by_id(vm["zoneid"])
    t = cat.template_by_id(vm["templateid"])
    o = cat.offering_by_id(vm["serviceofferingid"])
    assert z is not None and t is not None and o is not None
    size = root_volume_size(vm)
    return {
        "id": cat.stable_id("volume", vm["id"]),
        "name": f"ROOT-{vm['number']}",
        "zoneid": z.id,
        "zonename": z.name,
        "type": "ROOT",
        "deviceid": 0,
        "virtualmachineid": vm["id"],
        "vmname": vm["name"],
        "vmdisplayname": vm["displayname"],
        "vmstate": vmstate,
        "vmtype": "User",
        "provisioningtype": "thin",
        "size": size,
        "virtualsize": size,
        "physicalsize": size,
        "created": vm["created"],
        "state": "Ready",
        **owner(),
        "storagetype": "shared",
        "hypervisor": vm.get("hypervisor", SIMULATED),
        "storage": f"{z.name}-primary",
        "storageid": cat.stable_id("storagepool", z.name),
        "destroyed": False,
        "serviceofferingid": o.id,
        "serviceofferingname": o.name,
        "serviceofferingdisplaytext": o.displaytext,
        "templateid": t.id,
        "templatename": t.name,
        "templatedisplaytext": t.name,
        "isextractable": False,
        "displayvolume": True,
        "quiescevm": False,
        "supportsstoragesnapshot": False,
        "path": cat.stable_id("volume", vm["id"]),
        "tags": [],
    }


_UNLIMITED_RESOURCES = ("ip", "volume", "snapshot", "template", "project", "network", "vpc")


def domain() -> Obj:
    """The ROOT domain as its own account sees it (no parent; limits as strings)."""
    out: Obj = {
        "id": cat.DOMAIN_ID,
        "name": cat.DOMAIN,
        "level": 0,
        "haschild": False,
        "path": cat.DOMAIN,
        "state": "Active",
        "created": cat.CREATED,
        "vmlimit": "Unlimited",
        "vmtotal": 0,
        "vmavailable": "Unlimited",
    }
    for resource in (*_UNLIMITED_RESOURCES, "cpu", "memory"):
        out[f"{resource}limit"] = "Unlimited"
        out[f"{resource}total"] = 0
        out[f"{resource}available"] = "Unlimited"
    for resource in ("primarystorage", "secondarystorage"):
        out[f"{resource}limit"] = "-1"
        out[f"{resource}total"] = 0
        out[f"{resource}available"] = "-1"
    return out


def user(api_key: str | None) -> Obj:
    out: Obj = {
        "id": cat.USER_ID,
        "username": cat.ACCOUNT,
        "firstname": cat.ACCOUNT,
        "lastname": "user",
        "created": cat.CREATED,
        "state": "enabled",
        "account": cat.ACCOUNT,
        "accounttype": 0,
        "usersource": "native",
        "roleid": cat.stable_id("role", "User"),
        "roletype": "User",
        "rolename": "User",
        "domainid": cat.DOMAIN_ID,
        "domain": cat.DOMAIN,
        "timezone": "UTC",
        "accountid": cat.ACCOUNT_ID,
        "iscallerchilddomain": False,
        "isdefault": False,
        "is2faenabled": False,
        "is2famandated": False,
    }
    if api_key:
        out["apikey"] = api_key
    return out


def vm_nic(vm: Obj) -> Obj:
    """listNics' NicResponse: the VM's NIC plus its VM id and device id."""
    z = cat.zone_by_id(vm["zoneid"])
    assert z is not None
    return {**nic(vm, z), "virtualmachineid": vm["id"], "deviceid": "0"}


def os_type(description: str, category: str) -> Obj:
    return {
        "id": cat.ostype_id(description),
        "oscategoryid": cat.oscategory_id(category),
        "description": description,
        "isuserdefined": False,
    }


def disk_offering(d: cat.DiskOffering) -> Obj:
    return {
        "id": d.id,
        "name": d.name,
        "displaytext": f"{d.name} Disk, {d.disksize} GB" if d.disksize else "Custom Disk",
        "disksize": d.disksize,
        "created": cat.CREATED,
        "iscustomized": d.customized,
        "storagetype": "shared",
        "provisioningtype": "thin",
        "cacheMode": "none",
        "displayoffering": True,
        "encrypt": False,
        "disksizestrictness": False,
        "hasannotations": False,
    }


def region() -> Obj:
    return {**cat.REGION, "gslbserviceenabled": True, "portableipserviceenabled": False}
