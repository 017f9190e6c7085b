"""Virtual machines: deploy, start, stop, reboot, destroy, update, userdata, list.

Zone semantics: in the basic zone a VM's IP is chosen when it first starts and kept
across stop/start; in the advanced zone's shared network it is allocated by deploy
itself (even with startvm=false), honouring `ipaddress=`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator import errors, jobs, shapes
from stackfleet.simulator.commands import (
    ON_FAILURE,
    Ctx,
    Inner,
    command,
    effect,
    keyword_match,
    listing,
)
from stackfleet.simulator.commands import affinity as agmod
from stackfleet.simulator.commands import keypairs as kpmod
from stackfleet.simulator.commands import security_groups as sgmod
from stackfleet.simulator.commands import tags as tagmod
from stackfleet.simulator.commands.catalog_cmds import vm_count
from stackfleet.simulator.hypervisor import NETNS_DETAIL
from stackfleet.simulator.state import Doc, Tx

MAX_GET_USERDATA = 4096  # UserDataManagerImpl.MAX_HTTP_GET_LENGTH (base64 characters)
_HOSTNAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_TRANSITIONS = {
    "deployVirtualMachine": "Starting",
    "startVirtualMachine": "Starting",
    "stopVirtualMachine": "Stopping",
    "rebootVirtualMachine": "Running",
    "destroyVirtualMachine": "Stopping",
}


def live_vms(tx: Tx) -> list[Doc]:
    return [v for v in tx.all("vm") if not v.get("removed")]


def display_state(tx: Tx, vm: Doc, now: float) -> str:
    job = jobs.running_on(tx, vm["id"], now)
    if job is None:
        return str(vm["state"])
    if job["cmd"] == "deployVirtualMachine" and not job["params"]["startvm"]:
        return "Stopped"
    if job["cmd"] == "destroyVirtualMachine" and vm["state"] != "Running":
        return str(vm["state"])
    return _TRANSITIONS.get(job["cmd"], str(vm["state"]))


def render(tx: Tx, vm: Doc, now: float, state: str | None = None) -> dict[str, Any]:
    sgs = [g for g in (tx.get("sg", i) for i in vm["securitygroupids"]) if g]
    ags = [g for g in (tx.get("ag", i) for i in vm["affinitygroupids"]) if g]
    out = shapes.virtual_machine(
        vm,
        state or display_state(tx, vm, now),
        [shapes.vm_security_group(g) for g in sgs],
        [shapes.vm_affinity_group(g) for g in ags],
        tagmod.tags_for(tx, "UserVm", vm["id"]),
    )
    namespace = getattr(tx.hypervisor, "namespace", None)
    if namespace and vm.get("hypervisor") == tx.hypervisor.reported_name:
        # A QEMU guest's address exists only in this namespace: say so, so that a client
        # of `simulator serve` never dials it from the host (a VM detail, as CloudStack
        # reports others there).
        out["details"] = {**out["details"], NETNS_DETAIL: namespace}
    return out


def get_vm(ctx: Ctx, name: str = "id") -> Doc:
    vm_id = ctx.need(name)
    vm = ctx.tx.get("vm", vm_id)
    if vm is None or vm.get("removed"):
        raise errors.unknown_id(name, vm_id)
    return vm


def validate_userdata(ctx: Ctx, value: str) -> str:
    """UserDataManagerImpl.validateUserData: base64, a GET cap, vm.userdata.max.length."""
    if not re.fullmatch(r"[A-Za-z0-9+/=\s]*", value):
        raise errors.invalid("User data is not base64 encoded")
    cap = MAX_GET_USERDATA if ctx.method == "GET" else 1048576
    if len(value) >= cap:
        raise errors.invalid(f"User data is too long for an http {ctx.method} request")
    if len(value) > ctx.config.userdata_max_length:
        raise errors.invalid(
            f"User data has exceeded configurable max length : {ctx.config.userdata_max_length}"
        )
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4))
    except binascii.Error:
        raise errors.invalid("User data is not base64 encoded") from None
    if len(decoded) < 1:
        raise errors.invalid("User data is too short")
    return base64.b64encode(decoded).decode()


def _ips_in_use(tx: Tx, except_id: str | None = None) -> set[str]:
    used: set[str] = set()
    for v in live_vms(tx):
        if v["id"] != except_id and v["state"] not in ("Destroyed", "Error"):
            used.update(ip for ip in (v.get("ipaddress"), v.get("requestedip")) if ip)
    return used


def allocate_ip(tx: Tx, zone: cat.Zone, vm_id: str, requested: str | None) -> str:
    network = zone.network
    used = _ips_in_use(tx, vm_id)
    if requested is not None:
        if requested in used:
            raise errors.ApiError(
                533,
                f"Requested ip address {requested} is not available in the network {network.name}",
                errors.CS_INSUFFICIENT_ADDRESS,
            )
        return requested
    for candidate in network.candidates():
        if candidate not in used:
            return candidate
    raise errors.ApiError(
        533,
        f"Insufficient address capacity in network {network.name}",
        errors.CS_INSUFFICIENT_ADDRESS,
    )


def _describe(vm: Doc) -> str:
    return (
        f'VM instance {{id: "{vm["number"]}", name: "{vm["instancename"]}", '
        f'uuid: "{vm["id"]}", type="User"}}'
    )


def place(tx: Tx, vm: Doc, zone: cat.Zone, hosts: int) -> int:
    """A host honouring the VM's affinity groups; InsufficientServerCapacity if none."""
    others = [v for v in live_vms(tx) if v["id"] != vm["id"] and v.get("hostindex") is not None]
    allowed = set(range(hosts))
    for group_id in vm["affinitygroupids"]:
        group = tx.get("ag", group_id)
        if group is None:
            continue
        used = {v["hostindex"] for v in others if group_id in v["affinitygroupids"]}
        if group["type"] == "host anti-affinity":
            allowed -= used
        elif used:
            allowed &= used
    if not allowed:
        raise errors.ApiError(
            533, f"Unable to create a deployment for {_describe(vm)}", errors.CS_INSUFFICIENT_SERVER
        )
    load = {h: sum(1 for v in others if v["hostindex"] == h) for h in allowed}
    return min(sorted(allowed), key=lambda h: load[h])


def _resolve_groups(ctx: Ctx, kind: str, ids_param: str, names_param: str) -> list[str]:
    ids, names = ctx.id_list(ids_param), ctx.id_list(names_param)
    if ids and names:
        raise errors.invalid(
            f"{ids_param} parameter is mutually exclusive with {names_param} parameter"
        )
    for group_id in ids:
        if ctx.tx.get(kind, group_id) is None:
            raise errors.unknown_id(ids_param, group_id)
    lookup = sgmod.by_name if kind == "sg" else agmod.by_name
    for name in names:
        group = lookup(ctx.tx, name)
        if group is None:
            label = "security group" if kind == "sg" else "affinity group"
            raise errors.invalid(f"Unable to find {label} by name {name}")
        ids.append(group["id"])
    return ids


def _lookup_catalog(ctx: Ctx) -> tuple[cat.Zone, cat.Template, cat.Offering]:
    zone = cat.zone_by_id(ctx.need("zoneid"))
    if zone is None:
        raise errors.unknown_id("zoneid", ctx.need("zoneid"))
    template = cat.template_by_id(ctx.need("templateid"))
    if template is None:
        raise errors.unknown_id("templateid", ctx.need("templateid"))
    offering = cat.offering_by_id(ctx.need("serviceofferingid"))
    if offering is None:
        raise errors.unknown_id("serviceofferingid", ctx.need("serviceofferingid"))
    return zone, template, offering


def _check_name(ctx: Ctx, name: str, zone: cat.Zone) -> None:
    if not _HOSTNAME.match(name):
        raise errors.invalid(
            "Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' "
            "through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and "
            "can't start or end with \"-\" and can't start with digit"
        )
    if any(v["name"] == name and v["state"] != "Destroyed" for v in live_vms(ctx.tx)):
        raise errors.invalid(
            f"The vm with hostName {name} already exists in the network domain: "
            f"cs-sim.internal; network={zone.network.name}"
        )


def _requested_ip(ctx: Ctx, zone: cat.Zone) -> str | None:
    requested = ctx.get("ipaddress")
    if requested is None:
        return None
    try:
        ip = ipaddress.IPv4Address(requested)
    except ValueError:
        raise errors.invalid(f"Invalid format for IPv4 address: {requested}") from None
    if ip not in zone.network.net or str(ip) not in zone.network.candidates():
        raise errors.invalid(
            f"Requested ip address {requested} is not in the network {zone.network.name}'s range"
        )
    return str(ip)


def _root_disk_size(ctx: Ctx, template: cat.Template) -> int | None:
    """`rootdisksize` (GB) as UserVmManagerImpl checks it: positive, not below the template."""
    size = ctx.integer("rootdisksize")
    if size is None:
        return None
    if size <= 0:
        raise errors.invalid("Root disk size should be a positive number.")
    if size * shapes.GIB < template.size:
        raise errors.invalid(
            "Unsupported: rootdisksize override is smaller than template size "
            f"{template.size / shapes.GIB:.2f} GB"
        )
    return size


@command("deployVirtualMachine")
def deploy(ctx: Ctx) -> Inner:
    zone, template, offering = _lookup_catalog(ctx)
    for network_id in ctx.id_list("networkids"):
        if network_id != zone.network.id:
            raise errors.unknown_id("networkids", network_id)
    vm_id = str(uuid.uuid4())
    name = ctx.get("name") or f"VM-{vm_id}"
    _check_name(ctx, name, zone)
    keypair = ctx.get("keypair")
    if keypair is not None and kpmod.by_name(ctx.tx, keypair) is None:
        raise errors.invalid(f"A key pair with name '{keypair}' was not found.")
    sg_ids = _resolve_groups(ctx, "sg", "securitygroupids", "securitygroupnames")
    ag_ids = _resolve_groups(ctx, "ag", "affinitygroupids", "affinitygroupnames")
    userdata = ctx.get("userdata")
    if userdata is not None:
        userdata = validate_userdata(ctx, userdata)
    requested = _requested_ip(ctx, zone)
    rootdisksize = _root_disk_size(ctx, template)
    if vm_count(ctx.tx) >= ctx.config.vm_limit:
        raise errors.ApiError(
            535,
            f"Maximum number of resources of type 'user_vm' for account name={cat.ACCOUNT} "
            "in domain id=1 has been exceeded.",
            errors.CS_RESOURCE_ALLOCATION,
        )
    number = ctx.tx.counter("vm_number")
    vm: Doc = {
        "id": vm_id,
        "number": number,
        "name": name,
        "displayname": ctx.get("displayname") or name,
        "zoneid": zone.id,
        "templateid": template.id,
        "serviceofferingid": offering.id,
        "instancename": f"i-2-{number}-VM",
        "created": jobs.stamp(ctx.now),
        "state": "Stopped",
        "hostindex": None,
        "ipaddress": None,
        "requestedip": requested,
        "nicid": str(uuid.uuid4()),
        "macaddress": "1e:00:{:02x}:{:02x}:{:02x}:{:02x}".format(*tuple(number.to_bytes(4, "big"))),
        "keypair": keypair,
        "securitygroupids": sg_ids or [sgmod.DEFAULT_ID],
        "affinitygroupids": ag_ids,
        "userdata": userdata,
        "hypervisor": ctx.tx.hypervisor.reported_name,
    }
    if rootdisksize is not None:
        vm["rootdisksize"] = rootdisksize
    if zone.allocates_at_deploy:
        vm["ipaddress"] = allocate_ip(ctx.tx, zone, vm_id, requested)
    elif requested is not None:
        allocate_ip(ctx.tx, zone, vm_id, requested)  # refuse a taken address now
    ctx.tx.put("vm", vm)
    startvm = ctx.flag("startvm", default=True)
    return {"id": vm_id, "jobid": ctx.start_job("VirtualMachine", vm_id, {"startvm": startvm})}


def _start(tx: Tx, vm: Doc, hosts: int) -> None:
    zone = cat.zone_by_id(vm["zoneid"])
    assert zone is not None
    vm["hostindex"] = place(tx, vm, zone, hosts)
    if not vm.get("ipaddress"):
        vm["ipaddress"] = allocate_ip(tx, zone, vm["id"], vm.get("requestedip"))
    vm["state"] = "Running"
    tx.hypervisor.start(vm)


def _job_vm(tx: Tx, job: Doc) -> Doc:
    vm = tx.get("vm", job["instanceid"])
    if vm is None or vm.get("removed"):
        raise errors.ApiError(530, f"Unable to find VM by id {job['instanceid']}")
    return vm


def _result(tx: Tx, vm: Doc, when: float, state: str | None = None) -> dict[str, Any]:
    return {"virtualmachine": render(tx, vm, when, state or vm["state"])}


@effect("deployVirtualMachine")
def apply_deploy(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    vm = _job_vm(tx, job)
    if job["params"]["startvm"]:
        _start(tx, vm, tx_hosts(tx))
    tx.put("vm", vm)
    return _result(tx, vm, when)


def tx_hosts(tx: Tx) -> int:
    return int(tx.meta("hosts") or "4")


def _deploy_failed(tx: Tx, job: Doc) -> None:
    vm = tx.get("vm", job["instanceid"])
    if vm is not None:
        vm.update(state="Error", hostindex=None, ipaddress=None, requestedip=None)
        tx.put("vm", vm)


ON_FAILURE["deployVirtualMachine"] = _deploy_failed


def _async_vm_command(ctx: Ctx, extra: dict[str, Any] | None = None) -> Inner:
    vm = get_vm(ctx)
    if vm["state"] in ("Destroyed", "Error", "Expunging"):
        raise errors.invalid(f"VM {vm['id']} is in state {vm['state']}")
    return {"jobid": ctx.start_job("VirtualMachine", vm["id"], extra or {})}


@command("startVirtualMachine")
def start(ctx: Ctx) -> Inner:
    return _async_vm_command(ctx)


@effect("startVirtualMachine")
def apply_start(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    vm = _job_vm(tx, job)
    if vm["state"] != "Running":
        _start(tx, vm, tx_hosts(tx))
        tx.put("vm", vm)
    return _result(tx, vm, when)


@command("stopVirtualMachine")
def stop(ctx: Ctx) -> Inner:
    return _async_vm_command(ctx)


@effect("stopVirtualMachine")
def apply_stop(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    vm = _job_vm(tx, job)
    vm.update(state="Stopped", hostindex=None)
    tx.put("vm", vm)
    tx.hypervisor.stop(vm)
    return _result(tx, vm, when)


@command("rebootVirtualMachine")
def reboot(ctx: Ctx) -> Inner:
    return _async_vm_command(ctx)


@effect("rebootVirtualMachine")
def apply_reboot(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    vm = _job_vm(tx, job)
    if vm["state"] != "Running":
        raise errors.ApiError(530, f"Unable to reboot VM instance {vm['name']}: it is not running")
    tx.hypervisor.reboot(vm)
    return _result(tx, vm, when)


@command("destroyVirtualMachine")
def destroy(ctx: Ctx) -> Inner:
    vm = get_vm(ctx)
    expunge = ctx.flag("expunge")
    if vm["state"] == "Destroyed" and not expunge:
        raise errors.invalid(f"VM {vm['id']} is already destroyed")
    return {"jobid": ctx.start_job("VirtualMachine", vm["id"], {"expunge": expunge})}


@effect("destroyVirtualMachine")
def apply_destroy(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    vm = _job_vm(tx, job)
    tx.hypervisor.destroy(vm)
    # Destroy releases the host and the NIC's address; expunge removes the VM entirely.
    vm.update(state="Destroyed", hostindex=None, ipaddress=None, requestedip=None)
    if job["params"]["expunge"]:
        result = _result(tx, vm, when, "Expunging")
        vm["removed"] = True
        tagmod.drop_all(tx, "UserVm", vm["id"])
    else:
        result = _result(tx, vm, when)
    tx.put("vm", vm)
    return result


@command("updateVirtualMachine")
def update(ctx: Ctx) -> Inner:
    vm = get_vm(ctx)
    userdata = ctx.get("userdata")
    if userdata is not None:
        # CloudStack stores it and pushes it to the virtual router, running or not.
        vm["userdata"] = validate_userdata(ctx, userdata)
    if ctx.get("displayname") is not None:
        vm["displayname"] = ctx.get("displayname")
    if ctx.get("name") is not None and ctx.get("name") != vm["name"]:
        if vm["state"] != "Stopped":
            raise errors.invalid("The VM must be stopped to change its name")
        zone = cat.zone_by_id(vm["zoneid"])
        assert zone is not None
        _check_name(ctx, ctx.get("name") or "", zone)
        vm["name"] = ctx.get("name")
    ctx.tx.put("vm", vm)
    return {"virtualmachine": render(ctx.tx, vm, ctx.now)}


@command("changeServiceForVirtualMachine")
def change_service(ctx: Ctx) -> Inner:
    """Synchronous in 4.18; only a stopped VM may change offering (UserVmManagerImpl)."""
    vm = get_vm(ctx)
    offering_id = ctx.need("serviceofferingid")
    offering = cat.offering_by_id(offering_id)
    if offering is None:
        raise errors.unknown_id("serviceofferingid", offering_id)
    state = display_state(ctx.tx, vm, ctx.now)
    if state != "Stopped":
        raise errors.invalid(
            f"Unable to upgrade virtual machine {_describe(vm)}  in state {state}; "
            "make sure the virtual machine is stopped"
        )
    if offering.id == vm["serviceofferingid"]:
        raise errors.invalid(
            f"Not upgrading vm {_describe(vm)} since it already has the requested service "
            f"offering ({offering.name})"
        )
    vm["serviceofferingid"] = offering.id
    ctx.tx.put("vm", vm)
    return {"virtualmachine": render(ctx.tx, vm, ctx.now)}


@command("getVirtualMachineUserData")
def get_userdata(ctx: Ctx) -> Inner:
    vm = get_vm(ctx, "virtualmachineid")
    out: dict[str, Any] = {"virtualmachineid": vm["id"]}
    if vm.get("userdata"):
        out["userdata"] = vm["userdata"]
    return {"virtualmachineuserdata": out}


@command("listVirtualMachines")
def list_vms(ctx: Ctx) -> Inner:
    tx = ctx.tx
    for param, kind in (("id", "vm"), ("affinitygroupid", "ag"), ("securitygroupid", "sg")):
        value = ctx.get(param)
        if value is not None and tx.get(kind, value) is None:
            raise errors.unknown_id(param, value)
    ids = set(ctx.id_list("ids"))
    wanted_tags = ctx.maps("tags")
    wanted_state = ctx.get("state")
    items: list[Any] = []
    for vm in live_vms(tx):
        state = display_state(tx, vm, ctx.now)
        # Like CloudStack for users: destroyed VMs show only when asked for by state.
        if state == "Destroyed" and (wanted_state or "").lower() != "destroyed":
            continue
        if not (
            ctx.get("id") in (None, vm["id"])
            and (not ids or vm["id"] in ids)
            and ctx.get("name") in (None, vm["name"])
            and (wanted_state is None or wanted_state.lower() == state.lower())
            and ctx.get("zoneid") in (None, vm["zoneid"])
            and ctx.get("templateid") in (None, vm["templateid"])
            and ctx.get("serviceofferingid") in (None, vm["serviceofferingid"])
            and ctx.get("keypair") in (None, vm.get("keypair"))
            and ctx.get("affinitygroupid") in (None, *vm["affinitygroupids"])
            and ctx.get("securitygroupid") in (None, *vm["securitygroupids"])
            and keyword_match(ctx, vm["name"], vm["displayname"])
            and tagmod.matches(tx, "UserVm", vm["id"], wanted_tags)
        ):
            continue
        items.append((vm, state))
    # Render only the requested page: rendering (tags, groups) is the costly part.
    page = listing(ctx, "virtualmachine", items)
    if "virtualmachine" in page:
        page["virtualmachine"] = [render(tx, vm, ctx.now, st) for vm, st in page["virtualmachine"]]
    return page
