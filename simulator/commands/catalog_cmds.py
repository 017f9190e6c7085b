"""Read-only commands over the fixed cloud, the account's limits, and listApis itself."""

from __future__ import annotations

from typing import Any

from stackfleet.simulator import api_spec, errors, shapes
from stackfleet.simulator import catalog as cat
from stackfleet.simulator.commands import (
    ADMIN_ONLY,
    HANDLERS,
    Ctx,
    Inner,
    command,
    keyword_match,
    listing,
)
from stackfleet.simulator.state import Tx

VERSION = "4.18.0.0"


def _zone_filter(ctx: Ctx) -> cat.Zone | None:
    zone_id = ctx.get("zoneid")
    if zone_id is None:
        return None
    zone = cat.zone_by_id(zone_id)
    if zone is None:
        raise errors.unknown_id("zoneid", zone_id)
    return zone


@command("listZones")
def list_zones(ctx: Ctx) -> Inner:
    zone_id = ctx.get("id")
    if zone_id is not None and cat.zone_by_id(zone_id) is None:
        raise errors.unknown_id("id", zone_id)
    items = [
        shapes.zone(z)
        for z in cat.ZONES
        if zone_id in (None, z.id)
        and ctx.get("name") in (None, z.name)
        and ctx.get("networktype") in (None, z.networktype)
        and keyword_match(ctx, z.name)
    ]
    return listing(ctx, "zone", items)


@command("listTemplates")
def list_templates(ctx: Ctx) -> Inner:
    template_filter = ctx.need("templatefilter")
    allowed = (
        "featured",
        "self",
        "selfexecutable",
        "sharedexecutable",
        "executable",
        "community",
        "all",
    )
    if template_filter not in allowed:
        raise errors.invalid(f"Invalid template filter: {template_filter}")
    zone = _zone_filter(ctx)
    template_id = ctx.get("id")
    if template_id is not None and cat.template_by_id(template_id) is None:
        raise errors.unknown_id("id", template_id)
    # The catalog's templates are public and featured, owned by the system account.
    mine = template_filter in ("self", "selfexecutable", "sharedexecutable")
    items = [
        shapes.template(t, z)
        for t in cat.TEMPLATES
        for z in cat.ZONES
        if not mine
        and (zone is None or z.id == zone.id)
        and template_id in (None, t.id)
        and ctx.get("name") in (None, t.name)
        and keyword_match(ctx, t.name)
    ]
    return listing(ctx, "template", items)


@command("listServiceOfferings")
def list_offerings(ctx: Ctx) -> Inner:
    offering_id = ctx.get("id")
    if offering_id is not None and cat.offering_by_id(offering_id) is None:
        raise errors.unknown_id("id", offering_id)
    items = [
        shapes.offering(o)
        for o in cat.OFFERINGS
        if offering_id in (None, o.id)
        and ctx.get("name") in (None, o.name)
        and keyword_match(ctx, o.name)
    ]
    return listing(ctx, "serviceoffering", items)


@command("listNetworks")
def list_networks(ctx: Ctx) -> Inner:
    zone = _zone_filter(ctx)
    network_id = ctx.get("id")
    if network_id is not None and all(z.network.id != network_id for z in cat.ZONES):
        raise errors.unknown_id("id", network_id)
    items = [
        shapes.network(z)
        for z in cat.ZONES
        if (zone is None or z.id == zone.id)
        and network_id in (None, z.network.id)
        and keyword_match(ctx, z.network.name)
    ]
    return listing(ctx, "network", items)


@command("listCapabilities")
def list_capabilities(ctx: Ctx) -> Inner:
    return {
        "capability": {
            "securitygroupsenabled": True,
            "dynamicrolesenabled": True,
            "cloudstackversion": VERSION,
            "userpublictemplateenabled": False,
            "supportELB": "false",
            "projectinviterequired": False,
            "allowusercreateprojects": True,
            "customdiskofferingminsize": 1,
            "customdiskofferingmaxsize": 1024,
            "regionsecondaryenabled": False,
            "kvmsnapshotenabled": False,
            "allowuserviewdestroyedvm": True,
            "allowuserexpungerecovervm": True,
            "allowuserexpungerecovervolume": True,
            "allowuserviewalldomainaccounts": False,
            "kubernetesserviceenabled": False,
            "kubernetesclusterexperimentalfeaturesenabled": False,
            "defaultuipagesize": 20,
            "apilimitinterval": 1,
            "apilimitmax": int(ctx.config.rate_limit or 0),
        }
    }


@command("listApis")
def list_apis(ctx: Ctx) -> Inner:
    name = ctx.get("name")
    apis = api_spec.load()
    # What the account may call: every handler but those its role is denied (ADMIN_ONLY).
    callable_names = sorted(set(HANDLERS) - ADMIN_ONLY)
    if name is not None and name not in callable_names:
        raise errors.invalid(f"Api Discovery plugin was unable to find an api by that name: {name}")
    items = [apis[n].raw for n in callable_names if name in (None, n)]
    return listing(ctx, "api", items)


# No public IPs, port forwarding or static NAT in security-group zones; libcloud's
# list_nodes asks anyway, and CloudStack answers an empty list as {}.
@command("listPublicIpAddresses")
def list_public_ips(ctx: Ctx) -> Inner:
    return {}


@command("listPortForwardingRules")
def list_port_forwarding(ctx: Ctx) -> Inner:
    return {}


@command("listIpForwardingRules")
def list_ip_forwarding(ctx: Ctx) -> Inner:
    return {}


RESOURCE_TYPES = (
    "user_vm",
    "public_ip",
    "volume",
    "snapshot",
    "template",
    "project",
    "network",
    "vpc",
    "cpu",
    "memory",
    "primary_storage",
    "secondary_storage",
)


def vm_count(tx: Tx) -> int:
    # Destroyed and failed VMs no longer count against max.account.user.vms.
    return sum(
        1 for v in tx.all("vm") if not v.get("removed") and v["state"] not in ("Destroyed", "Error")
    )


@command("listResourceLimits")
def list_limits(ctx: Ctx) -> Inner:
    wanted = ctx.integer("resourcetype")
    wanted_name = ctx.get("resourcetypename")
    if wanted is not None and not 0 <= wanted < len(RESOURCE_TYPES):
        raise errors.invalid(f"Please specify a valid resource type: {wanted}")
    items: list[dict[str, Any]] = []
    for index, type_name in enumerate(RESOURCE_TYPES):
        if wanted not in (None, index) or wanted_name not in (None, type_name):
            continue
        items.append(
            {
                **shapes.owner(),
                "resourcetype": str(index),
                "resourcetypename": type_name,
                "max": ctx.config.vm_limit if index == 0 else -1,
            }
        )
    return listing(ctx, "resourcelimit", items)


@command("listAccounts")
def list_accounts(ctx: Ctx) -> Inner:
    if ctx.get("name") not in (None, cat.ACCOUNT) or ctx.get("id") not in (None, cat.ACCOUNT_ID):
        return {}
    vms = [v for v in ctx.tx.all("vm") if not v.get("removed")]
    total = vm_count(ctx.tx)
    running = sum(1 for v in vms if v["state"] == "Running")
    limit = ctx.config.vm_limit
    account = {
        "id": cat.ACCOUNT_ID,
        "name": cat.ACCOUNT,
        "accounttype": 0,
        "roletype": "User",
        "domainid": cat.DOMAIN_ID,
        "domain": cat.DOMAIN,
        "state": "enabled",
        "isdefault": False,
        "groups": [],
        # AccountResponse types: limits and availability are strings, totals numbers.
        "vmlimit": str(limit),
        "vmtotal": total,
        "vmavailable": str(max(0, limit - total)),
        "vmrunning": running,
        "vmstopped": sum(1 for v in vms if v["state"] == "Stopped"),
        "user": [
            {
                "id": cat.USER_ID,
                "username": cat.ACCOUNT,
                "account": cat.ACCOUNT,
                "accountid": cat.ACCOUNT_ID,
                "accounttype": 0,
                "domainid": cat.DOMAIN_ID,
                "domain": cat.DOMAIN,
                "state": "enabled",
                "created": cat.CREATED,
                "isdefault": False,
            }
        ],
    }
    return listing(ctx, "account", [account])
