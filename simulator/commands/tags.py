"""createTags, deleteTags, listTags, and the tag filters that list commands accept."""

from __future__ import annotations

from typing import Any

from stackfleet.simulator import errors, shapes
from stackfleet.simulator.commands import Ctx, Inner, command, effect, keyword_match, listing
from stackfleet.simulator.state import Doc, Tx

# ResourceObjectType name -> the store kind holding such resources.
TAGGABLE = {"UserVm": "vm", "SecurityGroup": "sg", "SecurityGroupRule": "rule"}


def canonical_type(name: str) -> str:
    for known in TAGGABLE:
        if known.lower() == name.lower():
            return known
    raise errors.invalid(f"Invalid resource type: {name}")


def tags_for(tx: Tx, resource_type: str, resource_id: str) -> list[dict[str, Any]]:
    return [shapes.tag(t) for t in tx.prefixed("tag", f"{resource_type}:{resource_id}:")]


def matches(tx: Tx, resource_type: str, resource_id: str, wanted: list[dict[str, str]]) -> bool:
    """The `tags[n].key/value` filter of list commands: every pair must be on the resource."""
    if not wanted:
        return True
    have = {(t["key"], t["value"]) for t in tags_for(tx, resource_type, resource_id)}
    return all((w.get("key"), w.get("value")) in have for w in wanted)


def drop_all(tx: Tx, resource_type: str, resource_id: str) -> None:
    for t in tx.prefixed("tag", f"{resource_type}:{resource_id}:"):
        tx.delete("tag", t["id"])


def _resources(ctx: Ctx) -> tuple[str, list[str]]:
    resource_type = canonical_type(ctx.need("resourcetype"))
    ids = ctx.id_list("resourceids")
    if not ids:
        raise errors.missing_param(ctx.command, "resourceids")
    for rid in ids:
        if ctx.tx.get(TAGGABLE[resource_type], rid) is None:
            raise errors.invalid(f"Unable to find resource by id {rid} and type {resource_type}")
    return resource_type, ids


@command("createTags")
def create_tags(ctx: Ctx) -> Inner:
    resource_type, ids = _resources(ctx)
    pairs = [m for m in ctx.maps("tags") if m.get("key")]
    if not pairs:
        raise errors.missing_param(ctx.command, "tags")
    for pair in pairs:
        if pair.get("value") is None or pair.get("value") == "":
            raise errors.invalid(f"Value for the key {pair['key']} is either null or empty")
    return {"jobid": ctx.start_job(None, None, {"type": resource_type, "ids": ids, "tags": pairs})}


@effect("createTags")
def apply_create(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    """All or nothing, and never over a key the resource already has, whatever its value:
    resource_tags is unique on (resource, type, key) in a case-blind collation, and
    TaggedResourceManagerImpl writes every pair in one transaction. Changing a value is
    deleteTags, then createTags."""
    p = job["params"]
    live = [rid for rid in p["ids"] if tx.get(TAGGABLE[p["type"]], rid) is not None]
    for rid in live:  # ids gone while the job waited are skipped
        have = {t["key"].lower() for t in tags_for(tx, p["type"], rid)}
        for pair in p["tags"]:
            if pair["key"].lower() in have:
                raise errors.ApiError(
                    errors.INTERNAL_ERROR,
                    f"tag {pair['key']} already on {p['type']} with id {rid}",
                    errors.CS_CLOUD_RUNTIME,
                )
    for rid in live:
        for pair in p["tags"]:
            tx.put(
                "tag",
                {
                    "id": f"{p['type']}:{rid}:{pair['key']}",
                    "key": pair["key"],
                    "value": pair["value"],
                    "resourcetype": p["type"],
                    "resourceid": rid,
                },
            )
    return {"success": True}


@command("deleteTags")
def delete_tags(ctx: Ctx) -> Inner:
    resource_type, ids = _resources(ctx)
    pairs = [m for m in ctx.maps("tags") if m.get("key")]
    return {"jobid": ctx.start_job(None, None, {"type": resource_type, "ids": ids, "tags": pairs})}


@effect("deleteTags")
def apply_delete(tx: Tx, job: Doc, when: float) -> dict[str, Any]:
    p = job["params"]
    for t in tx.all("tag"):
        if t["resourcetype"] != p["type"] or t["resourceid"] not in p["ids"]:
            continue
        if p["tags"] and not any(  # keys and values compared case-blind, as CloudStack does
            pair["key"].lower() == t["key"].lower()
            and (pair.get("value") or "").lower() in ("", t["value"].lower())
            for pair in p["tags"]
        ):
            continue
        tx.delete("tag", t["id"])
    return {"success": True}


@command("listTags")
def list_tags(ctx: Ctx) -> Inner:
    resource_type = ctx.get("resourcetype")
    wanted_type = canonical_type(resource_type) if resource_type else None
    items = [
        shapes.tag(t)
        for t in ctx.tx.all("tag")
        if (wanted_type is None or t["resourcetype"] == wanted_type)
        and ctx.get("resourceid") in (None, t["resourceid"])
        and ctx.get("key") in (None, t["key"])
        and ctx.get("value") in (None, t["value"])
        and keyword_match(ctx, t["key"], t["value"])
    ]
    return listing(ctx, "tag", items)
