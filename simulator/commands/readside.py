"""The read side a client's inventory needs: volumes, domains, projects, users, NICs, OS types,
hypervisors, regions, disk offerings; and listHosts as a non-admin account gets it.

Every VM has one ROOT volume (no data disks: createVolume is not implemented), sized from
deploy's `rootdisksize` or the template. The account has no projects, VPCs or load balancers
(security-group zones), so those lists are empty, answered as CloudStack answers an empty list.
"""

from __future__ import annotations

from stackfleet.simulator import catalog as cat
from stackfleet.simulator import errors, shapes
from stackfleet.simulator.commands import ADMIN_ONLY, Ctx, Inner, command, keyword_match, listing
from stackfleet.simulator.commands.vms import display_state, live_vms


def _unavailable(command_name: str) -> errors.ApiError:
    return errors.ApiError(
        errors.UNSUPPORTED_ACTION,
        f"The API {command_name} does not exist or is not available for this account.",
        errors.CS_SERVER_API,
    )


def _own_account(ctx: Ctx) -> bool:
    """`account`/`domainid` filters: this account sees only itself (anything else: nothing)."""
    return ctx.get("account") in (None, cat.ACCOUNT) and ctx.get("domainid") in (
        None,
        cat.DOMAIN_ID,
    )


def _zone_checked(ctx: Ctx) -> str | None:
    zone_id = ctx.get("zoneid")
    if zone_id is not None and cat.zone_by_id(zone_id) is None:
        raise errors.unknown_id("zoneid", zone_id)
    return zone_id


@command("listVolumes")
def list_volumes(ctx: Ctx) -> Inner:
    vm_filter = ctx.get("virtualmachineid")
    if vm_filter is not None:
        found = ctx.tx.get("vm", vm_filter)
        if found is None or found.get("removed"):
            raise errors.unknown_id("virtualmachineid", vm_filter)
    zone_id = _zone_checked(ctx)
    volumes = []
    for vm in live_vms(ctx.tx):
        volumes.append(shapes.volume(vm, display_state(ctx.tx, vm, ctx.now)))
    volume_id = ctx.get("id")
    if volume_id is not None and all(v["id"] != volume_id for v in volumes):
        raise errors.unknown_id("id", volume_id)
    ids = set(ctx.id_list("ids"))
    wanted_type = (ctx.get("type") or "").upper()
    items = [
        v
        for v in volumes
        if _own_account(ctx)
        and volume_id in (None, v["id"])
        and (not ids or v["id"] in ids)
        and vm_filter in (None, v["virtualmachineid"])
        and zone_id in (None, v["zoneid"])
        and wanted_type in ("", v["type"])
        and ctx.get("name") in (None, v["name"])
        and (ctx.get("state") or "").lower() in ("", v["state"].lower())
        and keyword_match(ctx, v["name"])
    ]
    return listing(ctx, "volume", items)


@command("listDomains")
def list_domains(ctx: Ctx) -> Inner:
    domain_id = ctx.get("id")
    if domain_id is not None and domain_id != cat.DOMAIN_ID:
        raise errors.unknown_id("id", domain_id)
    level = ctx.integer("level")
    keep = (
        ctx.get("name") in (None, cat.DOMAIN)
        and level in (None, 0)
        and keyword_match(ctx, cat.DOMAIN)
    )
    return listing(ctx, "domain", [shapes.domain()] if keep else [])


@command("listProjects")
def list_projects(ctx: Ctx) -> Inner:
    project_id = ctx.get("id")
    if project_id is not None:
        raise errors.unknown_id("id", project_id)
    return {}


@command("listUsers")
def list_users(ctx: Ctx) -> Inner:
    user_id = ctx.get("id")
    if user_id is not None and user_id != cat.USER_ID:
        raise errors.unknown_id("id", user_id)
    me = shapes.user(ctx.tx.meta("api_key"))
    keep = (
        _own_account(ctx)
        and ctx.get("username") in (None, me["username"])
        and ctx.get("accounttype") in (None, "0")
        and (ctx.get("state") or "enabled").lower() == "enabled"
        and keyword_match(ctx, me["username"], me["firstname"], me["lastname"])
    )
    return listing(ctx, "user", [me] if keep else [])


@command("listNics")
def list_nics(ctx: Ctx) -> Inner:
    vm_id = ctx.need("virtualmachineid")
    vm = ctx.tx.get("vm", vm_id)
    if vm is None or vm.get("removed"):
        raise errors.unknown_id("virtualmachineid", vm_id)
    network_id = ctx.get("networkid")
    if network_id is not None and all(z.network.id != network_id for z in cat.ZONES):
        raise errors.unknown_id("networkid", network_id)
    nic = shapes.vm_nic(vm)
    keep = ctx.get("nicid") in (None, nic["id"]) and network_id in (None, nic["networkid"])
    return listing(ctx, "nic", [nic] if keep else [])


@command("listOsTypes")
def list_os_types(ctx: Ctx) -> Inner:
    os_id = ctx.get("id")
    if os_id is not None and all(cat.ostype_id(d) != os_id for d, _ in cat.OS_TYPES):
        raise errors.unknown_id("id", os_id)
    items = [
        shapes.os_type(description, category)
        for description, category in cat.OS_TYPES
        if os_id in (None, cat.ostype_id(description))
        and ctx.get("description") in (None, description)
        and ctx.get("oscategoryid") in (None, cat.oscategory_id(category))
        and keyword_match(ctx, description)
    ]
    return listing(ctx, "ostype", items)


@command("listHypervisors")
def list_hypervisors(ctx: Ctx) -> Inner:
    _zone_checked(ctx)
    # Every host in every zone runs the state file's hypervisor: `Simulator`, or `KVM` (QEMU).
    return listing(ctx, "hypervisor", [{"name": ctx.tx.hypervisor.reported_name}])


@command("listRegions")
def list_regions(ctx: Ctx) -> Inner:
    region = shapes.region()
    keep = (
        ctx.integer("id") in (None, region["id"])
        and ctx.get("name") in (None, region["name"])
        and keyword_match(ctx, region["name"])
    )
    return listing(ctx, "region", [region] if keep else [])


@command("listDiskOfferings")
def list_disk_offerings(ctx: Ctx) -> Inner:
    offering_id = ctx.get("id")
    if offering_id is not None and all(d.id != offering_id for d in cat.DISK_OFFERINGS):
        raise errors.unknown_id("id", offering_id)
    _zone_checked(ctx)  # the offerings are public: every zone has them all
    items = [
        shapes.disk_offering(d)
        for d in cat.DISK_OFFERINGS
        if offering_id in (None, d.id)
        and ctx.get("name") in (None, d.name)
        and keyword_match(ctx, d.name)
    ]
    return listing(ctx, "diskoffering", items)


@command("listHosts")
def list_hosts(ctx: Ctx) -> Inner:
    assert ctx.command in ADMIN_ONLY
    raise _unavailable(ctx.command)


# Security-group zones have no VPCs and no load balancers: empty lists, never an error.
@command("listVPCs")
def list_vpcs(ctx: Ctx) -> Inner:
    _zone_checked(ctx)
    return {}


@command("listLoadBalancerRules")
def list_load_balancer_rules(ctx: Ctx) -> Inner:
    _zone_checked(ctx)
    return {}
