"""Affinity groups: host anti-affinity is honoured when VMs are placed on hosts."""

from __future__ import annotations

import uuid
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator import errors, shapes
from stackfleet.simulator.commands import Ctx, Inner, command, effect, keyword_match, listing
from stackfleet.simulator.state import Doc, Tx


def by_name(tx: Tx, name: str) -> Doc | None:
    return next((g for g in tx.all("ag") if g["name"] == name), None)


def members(tx: Tx, group_id: str) -> list[str]:
    return [
        v["id"] for v in tx.all("vm") if group_id in v["affinitygroupids"] and not v.get("removed")
    ]


def render(tx: Tx, g: Doc) -> dict[str, Any]:
    return shapes.affinity_group(g, members(tx, g["id"]))


@command("createAffinityGroup")
def create(ctx: Ctx) -> Inner:
    name, kind = ctx.need("name"), ctx.need("type")
    if kind not in cat.AFFINITY_TYPES:
        raise errors.invalid(
            f"Unable to create affinity group, invalid affinity group type: {kind}"
        )
    if by_name(ctx.tx, name) is not None:
        raise errors.invalid(
            f"Unable to create affinity group, a group with name {name} already exists."
        )
    # Like CloudStack's BaseAsyncCreateCmd: the group exists at once, the job reports it.
    group = {
        "id": str(uuid.uuid4()),
        "name": name,
        "type": kind,
        "description": ctx.get("description") or "",
    }
    ctx.tx.put("ag", group)
    return {"id": group["id"], "jobid": ctx.start_job("AffinityGroup", group["id"], {})}


@effect("createAffinityGroup")
def apply_create(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    group = tx.get("ag", job["instanceid"])
    if group is None:
        raise errors.ApiError(530, "Failed to create affinity group")
    return {"affinitygroup": render(tx, group)}


def _lookup(ctx: Ctx) -> Doc:
    group_id, name = ctx.get("id"), ctx.get("name")
    if group_id is not None:
        group = ctx.tx.get("ag", group_id)
        if group is None:
            raise errors.unknown_id("id", group_id)
        return group
    if name is not None:
        group = by_name(ctx.tx, name)
        if group is None:
            raise errors.invalid(f"Unable to find affinity group by name {name}")
        return group
    raise errors.invalid("Either the affinity group's id or name must be specified")


@command("deleteAffinityGroup")
def delete(ctx: Ctx) -> Inner:
    group = _lookup(ctx)
    return {"jobid": ctx.start_job("AffinityGroup", group["id"], {})}


@effect("deleteAffinityGroup")
def apply_delete(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    group_id = job["instanceid"]
    in_use = [
        v
        for v in tx.all("vm")
        if group_id in v["affinitygroupids"] and not v.get("removed") and v["state"] != "Destroyed"
    ]
    if in_use:
        raise errors.invalid("Cannot delete affinity group since there are VMs in it")
    tx.delete("ag", group_id)
    return {"success": True}


@command("listAffinityGroups")
def list_groups(ctx: Ctx) -> Inner:
    vm = ctx.optional_doc("vm", "virtualmachineid")
    items = [
        render(ctx.tx, g)
        for g in ctx.tx.all("ag")
        if ctx.get("id") in (None, g["id"])
        and ctx.get("name") in (None, g["name"])
        and ctx.get("type") in (None, g["type"])
        and (vm is None or g["id"] in vm["affinitygroupids"])
        and keyword_match(ctx, g["name"])
    ]
    return listing(ctx, "affinitygroup", items)


@command("listAffinityGroupTypes")
def list_types(ctx: Ctx) -> Inner:
    return listing(ctx, "affinityGroupType", [{"type": t} for t in cat.AFFINITY_TYPES])
