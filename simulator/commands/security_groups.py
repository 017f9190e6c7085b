"""Security groups and their ingress rules (tagged like any resource, rules included)."""

from __future__ import annotations

import uuid
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator import errors, shapes
from stackfleet.simulator.commands import Ctx, Inner, command, effect, keyword_match, listing
from stackfleet.simulator.commands import tags as tagmod
from stackfleet.simulator.state import Doc, Tx

DEFAULT_ID = cat.stable_id("securitygroup", "default")


def ensure_default(tx: Tx) -> None:
    # CloudStack gives every account a "default" group that cannot be deleted.
    if tx.get("sg", DEFAULT_ID) is None:
        tx.put("sg", {"id": DEFAULT_ID, "name": "default", "description": "Default Security Group"})


def by_name(tx: Tx, name: str) -> Doc | None:
    return next((g for g in tx.all("sg") if g["name"] == name), None)


def render(tx: Tx, sg: Doc, only_rules: list[Doc] | None = None) -> dict[str, Any]:
    rules = only_rules if only_rules is not None else rules_of(tx, sg["id"])
    vm_ids = [
        v["id"]
        for v in tx.all("vm")
        if sg["id"] in v["securitygroupids"] and v["state"] != "Destroyed"
    ]
    return shapes.security_group(
        sg,
        [shapes.rule(r, tagmod.tags_for(tx, "SecurityGroupRule", r["id"])) for r in rules],
        tagmod.tags_for(tx, "SecurityGroup", sg["id"]),
        vm_ids,
    )


def rules_of(tx: Tx, sg_id: str) -> list[Doc]:
    return [r for r in tx.all("rule") if r["sgid"] == sg_id]


def _lookup(ctx: Ctx, id_param: str, name_param: str) -> Doc:
    sg_id, name = ctx.get(id_param), ctx.get(name_param)
    if sg_id is not None:
        sg = ctx.tx.get("sg", sg_id)
        if sg is None:
            raise errors.unknown_id(id_param, sg_id)
        return sg
    if name is not None:
        sg = by_name(ctx.tx, name)
        if sg is None:
            raise errors.invalid(f"Unable to find security group by name {name}")
        return sg
    raise errors.invalid(f"Either {id_param} or {name_param} must be specified")


@command("createSecurityGroup")
def create(ctx: Ctx) -> Inner:
    name = ctx.need("name")
    if by_name(ctx.tx, name) is not None:
        raise errors.invalid(
            f"Unable to create security group, a group with name {name} already exists."
        )
    sg = {"id": str(uuid.uuid4()), "name": name, "description": ctx.get("description") or ""}
    ctx.tx.put("sg", sg)
    return {"securitygroup": render(ctx.tx, sg)}


@command("deleteSecurityGroup")
def delete(ctx: Ctx) -> Inner:
    sg = _lookup(ctx, "id", "name")
    if sg["id"] == DEFAULT_ID:
        raise errors.invalid("The network default group cannot be deleted")
    if any(sg["id"] in v["securitygroupids"] for v in ctx.tx.all("vm") if not v.get("removed")):
        raise errors.ApiError(536, "Cannot delete group when it's in use by virtual machines")
    for r in rules_of(ctx.tx, sg["id"]):
        tagmod.drop_all(ctx.tx, "SecurityGroupRule", r["id"])
        ctx.tx.delete("rule", r["id"])
    tagmod.drop_all(ctx.tx, "SecurityGroup", sg["id"])
    ctx.tx.delete("sg", sg["id"])
    return {"success": True}


def _ports(ctx: Ctx, protocol: str) -> dict[str, Any]:
    if protocol == "icmp":
        icmptype, icmpcode = ctx.integer("icmptype"), ctx.integer("icmpcode")
        return {
            "icmptype": -1 if icmptype is None else icmptype,
            "icmpcode": -1 if icmpcode is None else icmpcode,
        }
    if protocol not in ("tcp", "udp"):
        return {}
    start, end = ctx.integer("startport"), ctx.integer("endport")
    if start is None or end is None:
        raise errors.invalid(f"Invalid port range specified: startport = {start} endport = {end}")
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or start > end:
        raise errors.invalid(f"Invalid port range {start}:{end}")
    return {"startport": start, "endport": end}


@command("authorizeSecurityGroupIngress")
def authorize(ctx: Ctx) -> Inner:
    sg = _lookup(ctx, "securitygroupid", "securitygroupname")
    protocol = (ctx.get("protocol") or "all").lower()
    if protocol not in ("tcp", "udp", "icmp", "all"):
        raise errors.invalid(f"Invalid protocol {protocol}")
    ports = _ports(ctx, protocol)
    sources: list[dict[str, Any]] = [{"cidr": c} for c in ctx.id_list("cidrlist")]
    for entry in ctx.maps("usersecuritygrouplist"):
        group, account = entry.get("group"), entry.get("account") or cat.ACCOUNT
        if not group or by_name(ctx.tx, group) is None:
            raise errors.invalid(f"Unable to find security group {group} for account {account}")
        sources.append({"securitygroupname": group, "account": account})
    if not sources:
        raise errors.invalid(
            "At least one cidr or at least one security group needs to be specified"
        )
    rules = [{"sgid": sg["id"], "protocol": protocol, **ports, **s} for s in sources]
    return {"jobid": ctx.start_job("SecurityGroup", sg["id"], {"rules": rules})}


def _same(a: Doc, b: Doc) -> bool:
    keys = ("protocol", "startport", "endport", "icmptype", "icmpcode", "cidr", "securitygroupname")
    return all(a.get(k) == b.get(k) for k in keys)


@effect("authorizeSecurityGroupIngress")
def apply_authorize(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    sg = tx.get("sg", job["instanceid"])
    if sg is None:
        raise errors.ApiError(530, "Failed to authorize security group ingress rule(s)")
    existing = rules_of(tx, sg["id"])
    added: list[Doc] = []
    for wanted in job["params"]["rules"]:
        # CloudStack skips a rule that already exists; if nothing is left the job fails.
        if any(_same(wanted, have) for have in existing + added):
            continue
        added.append({"id": str(uuid.uuid4()), **wanted})
    if not added:
        raise errors.ApiError(530, "Failed to authorize security group ingress rule(s)")
    for r in added:
        tx.put("rule", r)
    return {"securitygroup": render(tx, sg, added)}


@command("revokeSecurityGroupIngress")
def revoke(ctx: Ctx) -> Inner:
    rule_id = ctx.need("id")
    rule = ctx.tx.get("rule", rule_id)
    if rule is None:
        raise errors.unknown_id("id", rule_id)
    return {"jobid": ctx.start_job("SecurityGroup", rule["sgid"], {"ruleid": rule_id})}


@effect("revokeSecurityGroupIngress")
def apply_revoke(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    rule_id = job["params"]["ruleid"]
    if tx.get("rule", rule_id) is None:
        raise errors.ApiError(530, "Failed to revoke security group ingress rule")
    tagmod.drop_all(tx, "SecurityGroupRule", rule_id)
    tx.delete("rule", rule_id)
    return {"success": True}


@command("listSecurityGroups")
def list_groups(ctx: Ctx) -> Inner:
    wanted_tags = ctx.maps("tags")
    vm = ctx.optional_doc("vm", "virtualmachineid")
    items = [
        render(ctx.tx, sg)
        for sg in ctx.tx.all("sg")
        if ctx.get("id") in (None, sg["id"])
        and ctx.get("securitygroupname") in (None, sg["name"])
        and (vm is None or sg["id"] in vm["securitygroupids"])
        and keyword_match(ctx, sg["name"], sg.get("description"))
        and tagmod.matches(ctx.tx, "SecurityGroup", sg["id"], wanted_tags)
    ]
    if ctx.get("id") and not items:
        raise errors.unknown_id("id", ctx.get("id") or "")
    return listing(ctx, "securitygroup", items)
