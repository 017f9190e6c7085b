"""Security groups and their rules, group-to-group rules included.

Simulator choices where exoscale's behaviour is not documented: a rule equal to an existing one
is refused (409), and a group is not deleted while an instance uses it or another group's rule
names it (409), so a client that works here deletes in an order any cloud accepts.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.exoscale.errors import bad_request, conflict, not_found
from stackfleet.simulator.state import Doc

SECURITY_GROUP = "security-group"
_PORTED = {"tcp", "udp"}


def _find(call: Call) -> Doc:
    found = call.tx.get(SECURITY_GROUP, call.path["id"])
    if found is None:
        raise not_found("security group", call.path["id"])
    return found


def _view(call: Call, doc: Doc) -> Doc:
    view: dict[str, Any] = {"id": doc["id"], "name": doc["name"], "rules": []}
    if doc.get("description"):
        view["description"] = doc["description"]
    for rule in doc["rules"]:
        shown = {k: v for k, v in rule.items() if k != "security-group-id"}
        if "security-group-id" in rule:
            other = call.tx.get(SECURITY_GROUP, rule["security-group-id"])
            shown["security-group"] = {
                "id": rule["security-group-id"],
                "name": other["name"] if other else "",
                "visibility": "private",
            }
        view["rules"].append(shown)
    return view


def create_security_group(call: Call) -> Doc:
    name = call.new_name(SECURITY_GROUP, "a security group")
    group_id = str(uuid.uuid4())
    doc = {
        "id": group_id,
        "name": name,
        "description": call.body.get("description", ""),
        "rules": [],
    }
    call.tx.put(SECURITY_GROUP, doc)
    return call.start("get-security-group", f"/security-group/{group_id}", group_id)


def list_security_groups(call: Call) -> Doc:
    # Only the account's own (private) groups are simulated, none of exoscale's public ones.
    if call.query.get("visibility") == "public":
        return {"security-groups": []}
    return {"security-groups": [_view(call, g) for g in call.tx.all(SECURITY_GROUP)]}


def get_security_group(call: Call) -> Doc:
    return _view(call, _find(call))


def delete_security_group(call: Call) -> Doc:
    doc = _find(call)
    users = [i["name"] for i in call.tx.all("instance") if doc["id"] in i["security-groups"]]
    if users:
        raise conflict(
            f"security group {doc['name']!r} is used by instance(s) {', '.join(users)}; "
            "delete them first"
        )
    naming = [
        g["name"]
        for g in call.tx.all(SECURITY_GROUP)
        if g["id"] != doc["id"] and any(r.get("security-group-id") == doc["id"] for r in g["rules"])
    ]
    if naming:
        raise conflict(
            f"security group {doc['name']!r} is named by rules of {', '.join(naming)}; "
            "delete those rules first"
        )
    call.tx.delete(SECURITY_GROUP, doc["id"])
    return call.start("get-security-group", f"/security-group/{doc['id']}", doc["id"])


def _source(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """A rule's other end: a CIDR (`network`) or another group (`security-group`)."""
    if ("network" in body) == ("security-group" in body):
        raise bad_request(
            "a rule needs exactly one of network (e.g. '203.0.113.0/24') or "
            "security-group (e.g. {'id': '<group id>'} or {'name': 'etcd'})"
        )
    if "network" in body:
        try:
            network = ipaddress.ip_network(body["network"], strict=False)
        except ValueError:
            raise bad_request(
                f"network: {body['network']!r} is not a CIDR (e.g. '0.0.0.0/0', '10.0.0.0/8')"
            ) from None
        return {"network": str(network)}
    ref = body["security-group"]
    if ref.get("visibility") == "public":
        raise not_found("public security group", str(ref.get("name") or ref.get("id")))
    groups = call.tx.all(SECURITY_GROUP)
    match = [g for g in groups if g["id"] == ref.get("id") or g["name"] == ref.get("name")]
    if not match or not (ref.get("id") or ref.get("name")):
        raise not_found("security group", str(ref.get("id") or ref.get("name")))
    return {"security-group-id": match[0]["id"]}


def _ports(body: dict[str, Any]) -> dict[str, Any]:
    protocol = body["protocol"]
    if protocol not in _PORTED:
        if "start-port" in body or "end-port" in body:
            raise bad_request(f"start-port/end-port: not for protocol {protocol}")
        return {"icmp": body["icmp"]} if protocol in {"icmp", "icmpv6"} and "icmp" in body else {}
    if "start-port" not in body or "end-port" not in body:
        raise bad_request(f"protocol {protocol} needs start-port and end-port (e.g. 2379, 2380)")
    if body["start-port"] > body["end-port"]:
        raise bad_request(f"start-port {body['start-port']} is above end-port {body['end-port']}")
    return {"start-port": body["start-port"], "end-port": body["end-port"]}


def add_rule_to_security_group(call: Call) -> Doc:
    doc = _find(call)
    body = call.body
    rule: dict[str, Any] = {
        "flow-direction": body["flow-direction"],
        "protocol": body["protocol"],
        **_ports(body),
        **_source(call, body),
    }
    if any(
        {k: v for k, v in r.items() if k not in ("id", "description")} == rule for r in doc["rules"]
    ):
        raise conflict(f"security group {doc['name']!r} has this rule already")
    rule["id"] = str(uuid.uuid4())
    if body.get("description"):
        rule["description"] = body["description"]
    doc["rules"].append(rule)
    call.tx.put(SECURITY_GROUP, doc)
    return call.start("get-security-group", f"/security-group/{doc['id']}", doc["id"])


def delete_rule_from_security_group(call: Call) -> Doc:
    doc = _find(call)
    rule_id = call.path["rule-id"]
    kept = [r for r in doc["rules"] if r["id"] != rule_id]
    if len(kept) == len(doc["rules"]):
        raise not_found("security group rule", rule_id)
    doc["rules"] = kept
    call.tx.put(SECURITY_GROUP, doc)
    return call.start("get-security-group", f"/security-group/{doc['id']}", doc["id"])
