"""Zones, templates, instance types, SSH keys, anti-affinity groups and operations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from stackfleet.simulator import sshkeys
from stackfleet.simulator.exoscale import catalog, operations
from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.exoscale.errors import bad_request, conflict, not_found
from stackfleet.simulator.state import Doc

SSH_KEY = "ssh-key"
ANTI_AFFINITY_GROUP = "anti-affinity-group"
INSTANCE = "instance"


def timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_zones(call: Call) -> Doc:
    return {"zones": catalog.zones()}


def list_templates(call: Call) -> Doc:
    # Every simulated template is public; an account's own (private) templates are not modelled.
    if call.query.get("visibility") == "private":
        return {"templates": []}
    family = call.query.get("family")
    found = [t.view() for t in catalog.TEMPLATES if family in (None, t.family)]
    return {"templates": found}


def get_template(call: Call) -> Doc:
    found = catalog.template(call.path["id"])
    if found is None:
        raise not_found("template", call.path["id"])
    return found.view()


def list_instance_types(call: Call) -> Doc:
    return {"instance-types": [t.view() for t in catalog.INSTANCE_TYPES]}


def get_instance_type(call: Call) -> Doc:
    found = catalog.instance_type(call.path["id"])
    if found is None:
        raise not_found("instance type", call.path["id"])
    return found.view()


def get_operation(call: Call) -> Doc:
    found = operations.get(call.tx, call.path["id"])
    if found is None:
        raise not_found("operation", call.path["id"])
    return found


# --- SSH keys ----------------------------------------------------------------------------


def ssh_key_view(doc: Doc) -> Doc:
    return {"name": doc["name"], "fingerprint": doc["fingerprint"]}


def register_ssh_key(call: Call) -> Doc:
    name = call.body["name"]
    if call.tx.get(SSH_KEY, name) is not None:
        raise conflict(f"an SSH key named {name!r} exists already")
    fingerprint = sshkeys.fingerprint(call.body["public-key"])
    if fingerprint is None:
        raise bad_request(
            "public-key: not an OpenSSH public key (expected a line such as "
            "'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... comment')"
        )
    call.tx.put(SSH_KEY, {"id": name, "name": name, "fingerprint": fingerprint})
    return call.start("get-ssh-key", f"/ssh-key/{name}")


def list_ssh_keys(call: Call) -> Doc:
    return {"ssh-keys": [ssh_key_view(k) for k in call.tx.all(SSH_KEY)]}


def get_ssh_key(call: Call) -> Doc:
    found = call.tx.get(SSH_KEY, call.path["name"])
    if found is None:
        raise not_found("SSH key", call.path["name"])
    return ssh_key_view(found)


def delete_ssh_key(call: Call) -> Doc:
    name = call.path["name"]
    if call.tx.get(SSH_KEY, name) is None:
        raise not_found("SSH key", name)
    call.tx.delete(SSH_KEY, name)
    return call.start("get-ssh-key", f"/ssh-key/{name}")


# --- anti-affinity groups ----------------------------------------------------------------


def _members(call: Call, group_id: str) -> list[Doc]:
    return [i for i in call.tx.all(INSTANCE) if group_id in i["anti-affinity-groups"]]


def anti_affinity_group_view(call: Call, doc: Doc) -> Doc:
    view: dict[str, Any] = {"id": doc["id"], "name": doc["name"]}
    if doc.get("description"):
        view["description"] = doc["description"]
    members = _members(call, doc["id"])
    if members:
        view["instances"] = [{"id": i["id"]} for i in members]
    return view


def create_anti_affinity_group(call: Call) -> Doc:
    name = call.new_name(ANTI_AFFINITY_GROUP, "an anti-affinity group")
    group_id = str(uuid.uuid4())
    doc = {"id": group_id, "name": name, "description": call.body.get("description", "")}
    call.tx.put(ANTI_AFFINITY_GROUP, doc)
    return call.start("get-anti-affinity-group", f"/anti-affinity-group/{group_id}", group_id)


def list_anti_affinity_groups(call: Call) -> Doc:
    groups = call.tx.all(ANTI_AFFINITY_GROUP)
    return {"anti-affinity-groups": [anti_affinity_group_view(call, g) for g in groups]}


def get_anti_affinity_group(call: Call) -> Doc:
    found = call.tx.get(ANTI_AFFINITY_GROUP, call.path["id"])
    if found is None:
        raise not_found("anti-affinity group", call.path["id"])
    return anti_affinity_group_view(call, found)


def delete_anti_affinity_group(call: Call) -> Doc:
    group_id = call.path["id"]
    if call.tx.get(ANTI_AFFINITY_GROUP, group_id) is None:
        raise not_found("anti-affinity group", group_id)
    members = _members(call, group_id)
    if members:
        raise conflict(
            f"anti-affinity group {group_id} still has {len(members)} instance(s); "
            "delete them first"
        )
    call.tx.delete(ANTI_AFFINITY_GROUP, group_id)
    return call.start("get-anti-affinity-group", f"/anti-affinity-group/{group_id}", group_id)
