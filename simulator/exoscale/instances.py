"""Compute instances: create, list (with a labels filter), get, update, start, stop, reboot,
delete.

A simulated instance runs nothing. Its public IPv4 comes from the documentation ranges
TEST-NET-2 and TEST-NET-3 (198.51.100.0/24, 203.0.113.0/24; RFC 5737), which no network routes,
and its IPv6 from 2001:db8::/32 (RFC 3849): nothing may dial them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import uuid
from typing import Any

from stackfleet.simulator.exoscale import catalog
from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.exoscale.errors import ApiError, bad_request, conflict, not_found
from stackfleet.simulator.exoscale.resources import (
    ANTI_AFFINITY_GROUP,
    INSTANCE,
    SSH_KEY,
    ssh_key_view,
    timestamp,
)
from stackfleet.simulator.exoscale.security_groups import SECURITY_GROUP
from stackfleet.simulator.state import Doc

PUBLIC_RANGES = ("198.51.100.0/24", "203.0.113.0/24")
IPV6_PREFIX = ipaddress.IPv6Network("2001:db8:5f::/64")

# The fields list-instances gives for each instance (its own, shorter schema than get-instance).
_LIST_FIELDS = (
    "id",
    "name",
    "state",
    "created-at",
    "instance-type",
    "template",
    "labels",
    "security-groups",
    "ssh-key",
    "ssh-keys",
    "public-ip-assignment",
    "public-ip",
    "ipv6-address",
    "mac-address",
    "private-networks",
)


def _find(call: Call) -> Doc:
    found = call.tx.get(INSTANCE, call.path["id"])
    if found is None:
        raise not_found("instance", call.path["id"])
    return found


def _user_data(value: str | None) -> str | None:
    """The API takes user-data base64-encoded."""
    if value is None:
        return None
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise bad_request(
            "user-data: not valid base64 (send the cloud-config base64-encoded, "
            "e.g. base64.b64encode(b'#cloud-config\\n...'))"
        ) from None
    return value  # its length limit is the spec's maxLength, checked before any handler


def _public_ip(call: Call) -> str:
    used = {i.get("public-ip") for i in call.tx.all(INSTANCE)}
    for cidr in PUBLIC_RANGES:
        for address in list(ipaddress.IPv4Network(cidr).hosts())[9:]:
            if str(address) not in used:
                return str(address)
    raise ApiError(409, "no public IPv4 address left in the simulated zone")


def _mac(instance_id: str) -> str:
    raw = uuid.UUID(instance_id).bytes[:5]
    return "06:" + ":".join(f"{b:02x}" for b in raw)


def _existing(call: Call, kind: str, refs: list[dict[str, Any]], key: str) -> list[str]:
    found = []
    for ref in refs:
        value = ref.get(key)
        if value is None or call.tx.get(kind, value) is None:
            raise not_found(kind.replace("-", " "), str(value))
        found.append(value)
    return found


def create_instance(call: Call) -> Doc:
    body = call.body
    template = catalog.template(body["template"].get("id", ""))
    if template is None:
        raise not_found("template", str(body["template"].get("id")))
    kind = catalog.instance_type(body["instance-type"].get("id", ""))
    if kind is None:
        raise not_found("instance type", str(body["instance-type"].get("id")))
    groups = _existing(call, SECURITY_GROUP, body.get("security-groups", []), "id")
    affinity = _existing(call, ANTI_AFFINITY_GROUP, body.get("anti-affinity-groups", []), "id")
    key_refs = list(body.get("ssh-keys", []))
    if "ssh-key" in body:
        key_refs.insert(0, body["ssh-key"])
    keys = list(dict.fromkeys(_existing(call, SSH_KEY, key_refs, "name")))
    instance_id = str(uuid.uuid4())
    assignment = body.get("public-ip-assignment", "inet4")
    auto_start = body.get("auto-start", True)
    doc: Doc = {
        "id": instance_id,
        "name": body.get("name") or f"instance-{instance_id[:8]}",
        "state": "starting" if auto_start else "stopped",
        "created-at": timestamp(call.now),
        "template": template.id,
        "instance-type": kind.id,
        "disk-size": body["disk-size"],
        "labels": dict(body.get("labels", {})),
        "security-groups": groups,
        "anti-affinity-groups": affinity,
        "ssh-keys": keys,
        "user-data": _user_data(body.get("user-data")),
        "public-ip-assignment": assignment,
        "public-ip": _public_ip(call) if assignment != "none" else None,
        "ipv6": assignment == "dual" or bool(body.get("ipv6-enabled")),
        "secureboot-enabled": bool(body.get("secureboot-enabled")),
        "tpm-enabled": bool(body.get("tpm-enabled")),
    }
    call.tx.put(INSTANCE, doc)
    effect = {"kind": INSTANCE, "id": instance_id, "state": "running"} if auto_start else None
    return call.start("get-instance", f"/instance/{instance_id}", instance_id, effect)


def _view(call: Call, doc: Doc) -> Doc:
    template = catalog.template(doc["template"])
    kind = catalog.instance_type(doc["instance-type"])
    assert template is not None and kind is not None  # created only from the catalog
    keys = [ssh_key_view(k) for k in (call.tx.get(SSH_KEY, n) for n in doc["ssh-keys"]) if k]
    view: dict[str, Any] = {
        "id": doc["id"],
        "name": doc["name"],
        "state": doc["state"],
        "created-at": doc["created-at"],
        "template": template.view(),
        "instance-type": kind.view(),
        "disk-size": doc["disk-size"],
        "labels": doc["labels"],
        "security-groups": [{"id": g} for g in doc["security-groups"]],
        "anti-affinity-groups": [{"id": g} for g in doc["anti-affinity-groups"]],
        "ssh-keys": keys,
        "public-ip-assignment": doc["public-ip-assignment"],
        "mac-address": _mac(doc["id"]),
        "private-networks": [],
        "elastic-ips": [],
        "snapshots": [],
        "secureboot-enabled": doc["secureboot-enabled"],
        "tpm-enabled": doc["tpm-enabled"],
        "disk-encrypted": False,
        "application-consistent-snapshot-enabled": False,
    }
    if keys:
        view["ssh-key"] = keys[0]
    if doc["public-ip"]:
        view["public-ip"] = doc["public-ip"]
    if doc["ipv6"]:
        index = int(ipaddress.IPv4Address(doc["public-ip"] or "0.0.0.1")) & 0xFFFFFFFF
        view["ipv6-address"] = str(IPV6_PREFIX.network_address + index)
    if doc["user-data"]:
        view["user-data"] = doc["user-data"]
    return view


def _label_filter(text: str) -> dict[str, str | None]:
    """`k=v k2=v2` (space-separated; a bare `k` asks only that the label exists), the form
    exoscale's own tools send in list-instances' `labels` parameter."""
    wanted: dict[str, str | None] = {}
    for pair in text.split():
        key, sep, value = pair.partition("=")
        if not key:
            raise bad_request(f"labels: {pair!r} is not key=value (e.g. 'role=etcd cluster=demo')")
        wanted[key] = value if sep else None
    return wanted


def list_instances(call: Call) -> Doc:
    wanted = _label_filter(call.query.get("labels", ""))
    address = call.query.get("ip-address")
    found = []
    for doc in call.tx.all(INSTANCE):
        labels = doc["labels"]
        if any(k not in labels or (v is not None and labels[k] != v) for k, v in wanted.items()):
            continue
        if address is not None and address != doc["public-ip"]:
            continue
        if call.query.get("manager-id") is not None:
            continue  # no simulated instance belongs to an instance pool
        full = _view(call, doc)
        found.append({k: full[k] for k in _LIST_FIELDS if k in full})
    return {"instances": found}


def get_instance(call: Call) -> Doc:
    return _view(call, _find(call))


def update_instance(call: Call) -> Doc:
    doc = _find(call)
    body = call.body
    if "name" in body:
        doc["name"] = body["name"]
    if "labels" in body:
        doc["labels"] = dict(body["labels"] or {})
    if "user-data" in body:
        doc["user-data"] = _user_data(body["user-data"])
    if "public-ip-assignment" in body:
        doc["public-ip-assignment"] = body["public-ip-assignment"]
        if body["public-ip-assignment"] == "none":
            doc["public-ip"] = None
        elif doc["public-ip"] is None:
            doc["public-ip"] = _public_ip(call)
    call.tx.put(INSTANCE, doc)
    return call.start("get-instance", f"/instance/{doc['id']}", doc["id"])


def _transition(call: Call, allowed: tuple[str, ...], now: str | None, then: str | None) -> Doc:
    doc = _find(call)
    if doc["state"] not in allowed:
        raise conflict(
            f"instance {doc['id']} is {doc['state']}; {call.operation} needs it "
            f"{' or '.join(allowed)}"
        )
    if now is not None:
        doc["state"] = now
        call.tx.put(INSTANCE, doc)
    effect = {"kind": INSTANCE, "id": doc["id"], "state": then} if then else None
    return call.start("get-instance", f"/instance/{doc['id']}", doc["id"], effect)


def start_instance(call: Call) -> Doc:
    return _transition(call, ("stopped",), "starting", "running")


def stop_instance(call: Call) -> Doc:
    return _transition(call, ("running", "starting"), "stopping", "stopped")


def reboot_instance(call: Call) -> Doc:
    return _transition(call, ("running",), None, None)


def delete_instance(call: Call) -> Doc:
    doc = _find(call)
    if doc["state"] == "destroying":
        raise conflict(f"instance {doc['id']} is being destroyed already")
    doc["state"] = "destroying"
    call.tx.put(INSTANCE, doc)
    effect = {"kind": INSTANCE, "id": doc["id"], "remove": True}
    return call.start("get-instance", f"/instance/{doc['id']}", doc["id"], effect)
