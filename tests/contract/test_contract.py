"""The provider contract: what the engine relies on, asserted the same for every provider.

Every test runs once per row of sf_contract.PROVIDERS. Real: the engine's own create pipeline
(provisioners/create.py) and teardown through each provider; for `cloudstack`, the
CloudStack provider over HTTP to the embedded simulator (signed requests, async jobs,
SQLite state). For `fake`: the in-memory cloud of tests/sf_fakecloud.py. Simulated: the VMs.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sf_contract import Cloud

from stackfleet.errors import NotFound
from stackfleet.provisioners import naming
from stackfleet.provisioners.base import (
    CLUSTER_TAG,
    ROLE_TAG,
    LiveState,
    Machine,
    MachineRequest,
    MachineState,
    Zone,
)
from stackfleet.provisioners.create import create_machines
from stackfleet.security_groups.rules import Rule

CLUSTER = "ct"
SSH = Rule("tcp", 22, 22, cidr="192.0.2.0/24")
PEER = Rule("tcp", 2380, 2380, source_group=naming.group_name(CLUSTER, "etcd"))


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


def _requests(cloud: Cloud, zone: Zone, roles: dict[str, int], start: bool) -> list[MachineRequest]:
    image = cloud.prov.find_image(zone, cloud.template)
    size = cloud.prov.find_size(zone, cloud.offering)
    return [
        MachineRequest(
            name=naming.machine_name(CLUSTER, role, i),
            role=role,
            zone_id=zone.id,
            image_id=image.id,
            size_id=size.id,
            disk_gb=None,
            group_names=(naming.group_name(CLUSTER, role),),
            key_name=naming.key_name(CLUSTER),
            userdata=f"#cloud-config\nhostname: {role}-{i}\n",
            spread_group=None,
            start=start,
            tags={CLUSTER_TAG: CLUSTER, ROLE_TAG: role},
        )
        for role, count in roles.items()
        for i in range(1, count + 1)
    ]


def _groundwork(cloud: Cloud) -> Zone:
    """The key and the groups machines are created in."""
    prov = cloud.prov
    prov.import_ssh_key(naming.key_name(CLUSTER), _public_key())
    for role in ("etcd", "worker"):
        tags = {CLUSTER_TAG: CLUSTER, ROLE_TAG: role}
        prov.create_group(naming.group_name(CLUSTER, role), f"contract {role}", tags)
    return prov.find_zone(cloud.zone)


def test_lookups_find_by_name_and_id_and_name_the_field_when_absent(cloud: Cloud) -> None:
    prov = cloud.prov
    zone = prov.find_zone(cloud.zone)
    assert prov.find_zone(zone.id) == zone
    image = prov.find_image(zone, cloud.template)
    assert prov.find_image(zone, image.id) == image
    size = prov.find_size(zone, cloud.offering)
    assert size.memory_mb > 0 and prov.find_size(zone, size.id) == size
    with pytest.raises(NotFound, match=r"cloud\.zone"):
        prov.find_zone("no-such-zone")
    with pytest.raises(NotFound, match=r"roles\.etcd\.template"):
        prov.find_image(zone, "no-such-template", field="roles.etcd.template")
    with pytest.raises(NotFound, match=r"roles\.workers\.offering"):
        prov.find_size(zone, "no-such-offering", field="roles.workers.offering")


def test_userdata_rule_measures_and_has_a_usable_default(cloud: Cloud) -> None:
    rule = cloud.prov.userdata_rule
    big = "#cloud-config\n" + "x" * 4000
    small, large = rule.size("#cloud-config\n"), rule.size(big)
    assert 0 < small < large and large >= 4000
    assert rule.default_limit >= 16384 and rule.unit
    assert rule.check({"a": big, "b": "#cloud-config\n"}, small) == {"a": large}


def test_an_empty_cloud_has_no_cluster_and_the_lock_is_atomic(cloud: Cloud) -> None:
    prov = cloud.prov
    assert prov.live_state(CLUSTER).is_empty()
    assert prov.take_lock(CLUSTER, "host:1:100") is None
    assert prov.take_lock(CLUSTER, "host:2:200") == "host:1:100"  # a second holder is told
    prov.release_lock(CLUSTER, "host:2:200")  # not the holder: nothing happens
    assert prov.take_lock(CLUSTER, "host:3:300") == "host:1:100"
    prov.release_lock(CLUSTER, "host:1:100")
    assert prov.take_lock(CLUSTER, "host:3:300") is None
    prov.release_lock(CLUSTER, None)  # whoever holds it
    assert prov.take_lock(CLUSTER, "host:4:400") is None
    prov.release_lock(CLUSTER, "host:4:400")
    assert prov.live_state(CLUSTER).is_empty(), "the lock is not a cluster resource"


def test_keys_groups_rules_and_cluster_tags_read_back(cloud: Cloud) -> None:
    prov = cloud.prov
    public = _public_key()
    prov.import_ssh_key(naming.key_name(CLUSTER), public)
    tags = {CLUSTER_TAG: CLUSTER, ROLE_TAG: "etcd"}
    etcd = prov.create_group(naming.group_name(CLUSTER, "etcd"), "contract etcd", tags)
    prov.change_rules({etcd.name: [SSH, PEER]}, [], [], {CLUSTER_TAG: CLUSTER})
    prov.set_cluster_tags(CLUSTER, {"stackfleet:expires": "2030-01-01T00:00:00Z"})
    prov.settle()

    live = prov.live_state(CLUSTER)
    assert [k.fingerprint for k in live.keys] == [prov.key_fingerprint(public)]
    (group,) = live.groups
    assert {r.rule for r in group.rules} == {SSH, PEER}
    assert all(r.managed for r in group.rules)
    assert live.tags.get("stackfleet:expires") == "2030-01-01T00:00:00Z"
    assert [(c.name, c.expires) for c in prov.list_clusters() if c.name == CLUSTER] == [
        (CLUSTER, "2030-01-01T00:00:00Z")
    ]

    ssh_id = next(r.id for r in group.rules if r.rule == SSH)
    prov.change_rules({}, [ssh_id], [], {})
    prov.set_cluster_tags(CLUSTER, {"stackfleet:expires": None})
    prov.settle()
    live = prov.live_state(CLUSTER)
    assert [r.rule for r in live.groups[0].rules] == [PEER]
    assert "stackfleet:expires" not in live.tags


def test_the_engines_create_pipeline_runs_on_the_primitives(cloud: Cloud) -> None:
    """Created stopped (IPs known in this zone), then the `ready` hook's userdata is
    written, the marker tag set, and the machines started: all come back Running."""
    prov = cloud.prov
    zone = _groundwork(cloud)
    requests = _requests(cloud, zone, {"etcd": 1, "worker": 2}, start=False)
    offered: list[str] = []

    def ready(fresh: list[Machine]) -> dict[str, str]:
        assert all(m.state == MachineState.STOPPED and m.private_ip for m in fresh)
        offered.extend(m.name for m in fresh)
        return {m.id: f"#cloud-config\nhostname: {m.name}\n" for m in fresh}

    made = create_machines(prov, requests, ready, {"stackfleet:bootstrap": "done"})
    prov.settle()
    assert sorted(offered) == sorted(r.name for r in requests)
    assert [(m.name, m.role, m.state) for m in made] == [
        (r.name, r.role, MachineState.RUNNING) for r in requests
    ]
    live = {m.name: m for m in prov.live_state(CLUSTER).machines}
    assert set(live) == {r.name for r in requests}
    for m in live.values():
        assert m.tags.get(ROLE_TAG) == m.role and m.tags.get(CLUSTER_TAG) == CLUSTER
        assert m.tags.get("stackfleet:bootstrap") == "done"
        assert isinstance(m.state, MachineState) and m.private_ip
    assert {m.name for m in prov.machines_named(["ct-worker-2", "ct-none-9"])} == {"ct-worker-2"}


def test_a_tag_named_as_replacing_takes_its_new_value_on_machines_and_groups(
    cloud: Cloud,
) -> None:
    """A renewed expiry, a role tag put right: the engine names the keys whose old value
    goes, and every provider ends with the new value (CloudStack deletes, then creates)."""
    prov = cloud.prov
    zone = _groundwork(cloud)
    made = create_machines(prov, _requests(cloud, zone, {"worker": 2}, start=False))
    ids = [m.id for m in made]
    prov.tag_machines(ids, {"stackfleet:expires": "2030-01-01T00:00:00Z"})
    prov.settle()
    prov.tag_machines(
        ids, {"stackfleet:expires": "2031-01-01T00:00:00Z"}, replacing=["stackfleet:expires"]
    )
    prov.settle()
    for m in prov.live_state(CLUSTER).machines:
        assert m.tags.get("stackfleet:expires") == "2031-01-01T00:00:00Z"
        assert m.tags.get(ROLE_TAG) == "worker", "the other tags stay"
    if prov.group_tags:
        group = next(g for g in prov.live_state(CLUSTER).groups if g.name.endswith("-worker"))
        prov.tag_group(group.id, {ROLE_TAG: "etcd"}, replacing=[ROLE_TAG])
        prov.settle()
        again = next(g for g in prov.live_state(CLUSTER).groups if g.id == group.id)
        assert again.tags.get(ROLE_TAG) == "etcd" and again.tags.get(CLUSTER_TAG) == CLUSTER


def test_stop_set_userdata_start_and_destroy(cloud: Cloud) -> None:
    prov = cloud.prov
    zone = _groundwork(cloud)
    (made,) = create_machines(prov, _requests(cloud, zone, {"worker": 1}, start=True))
    assert made.state == MachineState.RUNNING
    (stopped,) = prov.stop_machines([made.id])
    assert stopped.state == MachineState.STOPPED
    prov.set_userdata({made.id: "#cloud-config\nhostname: again\n"})
    (started,) = prov.start_machines([made.id])
    assert started.state == MachineState.RUNNING
    prov.destroy_machines([made.id])
    assert prov.machines_by_id([made.id]) == []
    prov.destroy_machines([])  # nothing to do is fine


def test_teardown_removes_everything_and_twice_is_fine(cloud: Cloud) -> None:
    """Machines, group-to-group rules (which clouds may refuse to outlive), groups, the
    spread group and the key go, in whatever order the provider needs."""
    prov = cloud.prov
    zone = _groundwork(cloud)
    prov.create_spread_group(naming.spread_group_name(CLUSTER))
    prov.change_rules(
        {naming.group_name(CLUSTER, "worker"): [PEER], naming.group_name(CLUSTER, "etcd"): [PEER]},
        [],
        [],
        {CLUSTER_TAG: CLUSTER},
    )
    create_machines(prov, _requests(cloud, zone, {"etcd": 1, "worker": 2}, start=True))
    prov.settle()
    live = prov.live_state(CLUSTER)
    assert len(live.machines) == 3 and len(live.groups) == 2 and live.keys
    assert live.spread_groups

    phases: list[str] = []
    prov.teardown(live, phases.append)
    assert phases, "teardown says what it is doing"
    after = prov.live_state(CLUSTER)
    assert after.is_empty(), after
    prov.teardown(after, phases.append)  # a second `down`
    assert prov.live_state(CLUSTER) == LiveState(CLUSTER)
