"""The port table as rules, and the reconciler's diff. Pure data in, data out."""

from __future__ import annotations

from dataclasses import dataclass

from stackfleet.security_groups.reconcile import diff_rules, open_to_world
from stackfleet.security_groups.rules import Rule
from stackfleet.security_groups.rulesets import Access, desired_rules


def group(role: str) -> str:
    return f"c-{role}"


def test_port_table_for_all_roles() -> None:
    rules = desired_rules(
        ["etcd", "control", "worker"],
        Access(ssh_cidrs=("198.51.100.7/32",), api_cidrs=("198.51.100.0/24",)),
        group,
    )
    etcd = {(r.protocol, r.start_port, r.cidr or r.source_group) for r in rules["c-etcd"]}
    assert etcd == {
        ("tcp", 22, "198.51.100.7/32"),
        ("tcp", 2379, "c-etcd"),
        ("tcp", 2379, "c-control"),
        ("tcp", 2379, "c-worker"),
        ("tcp", 2380, "c-etcd"),
    }
    control = {(r.protocol, r.start_port, r.cidr or r.source_group) for r in rules["c-control"]}
    assert ("tcp", 6443, "198.51.100.0/24") in control
    assert ("udp", 8472, "c-worker") in control and ("tcp", 10250, "c-control") in control
    assert ("tcp", 2380, "c-control") not in control
    worker = rules["c-worker"]
    assert not any(r.start_port == 30000 for r in worker)  # nodeports are opt-in
    assert open_to_world(rules) == []


def test_nodeports_and_world_access_only_when_asked() -> None:
    rules = desired_rules(
        ["etcd", "control", "worker"], Access(nodeport_cidrs=("0.0.0.0/0",)), group
    )
    assert Rule("tcp", 30000, 32767, cidr="0.0.0.0/0") in rules["c-worker"]
    assert open_to_world(rules) == [("c-worker", Rule("tcp", 30000, 32767, cidr="0.0.0.0/0"))]


@dataclass(frozen=True)
class Existing:
    id: str
    rule: Rule
    managed: bool


def test_diff_adds_missing_revokes_only_managed_and_adopts_untagged() -> None:
    ssh = Rule("tcp", 22, 22, cidr="10.0.0.0/8")
    peer = Rule("tcp", 2380, 2380, source_group="c-etcd")
    old = Rule("tcp", 22, 22, cidr="0.0.0.0/0")
    by_hand = Rule("tcp", 9100, 9100, cidr="10.1.0.0/16")
    current = {
        "c-etcd": [
            Existing("r1", ssh, managed=False),  # made by a run killed before tagging
            Existing("r2", old, managed=True),  # stackfleet's, no longer wanted
            Existing("r3", by_hand, managed=False),  # an operator's: left alone
            Existing("r4", ssh, managed=True),  # a duplicate of r1
        ]
    }
    changes = diff_rules({"c-etcd": {ssh, peer}}, current)
    assert changes.add == {"c-etcd": [peer]}
    assert changes.adopt == ["r1"]
    assert sorted(changes.revoke) == ["r2", "r4"]


def test_diff_of_a_converged_group_is_empty() -> None:
    ssh = Rule("tcp", 22, 22, cidr="10.0.0.0/8")
    assert diff_rules({"g": {ssh}}, {"g": [Existing("r", ssh, True)]}).is_empty()
