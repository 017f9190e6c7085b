"""The official exoscale client drives the simulator through instances, security groups and SSH
keys, waiting on operations; every request and answer validates against the OpenAPI schemas.

Real: PyPI's `exoscale` client (exoscale.api.v2.Client), unmodified, signing with
EXO2-HMAC-SHA256; the OpenAPI spec it ships (the simulator validates against it and logs the
verdicts, which the tests read); HTTP over loopback. Simulated: the cloud (instances run nothing;
their addresses come from documentation ranges nobody dials).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from exo_checks import assert_all_valid, log_entries
from exoscale.api.exceptions import ExoscaleAPIClientException

from stackfleet.simulator.exoscale import ExoscaleSimulator

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
    "demo@stackfleet"
)


def _created(client: Any, operation: dict[str, Any]) -> str:
    """Wait on an operation with the client's own wait(); the id of what it made."""
    done = client.wait(operation["id"])
    assert done["state"] == "success"
    resource_id: str = done["reference"]["id"]
    return resource_id


def _catalog(client: Any, family: str) -> tuple[str, str]:
    templates = client.list_templates(visibility="public")["templates"]
    template = next(t for t in templates if t["family"] == family)
    small = next(t for t in client.list_instance_types()["instance-types"] if t["size"] == "small")
    return template["id"], small["id"]


def test_instance_create_list_delete(client: Any, sim: ExoscaleSimulator) -> None:
    group = _created(client, client.create_security_group(name="demo-nodes"))
    client.wait(client.register_ssh_key(name="demo-key", public_key=PUBLIC_KEY)["id"])
    template, kind = _catalog(client, "flatcar")
    userdata = base64.b64encode(b"#cloud-config\nhostname: demo-etcd-1\n").decode()

    op = client.create_instance(
        name="demo-etcd-1",
        template={"id": template},
        instance_type={"id": kind},
        disk_size=20,
        security_groups=[{"id": group}],
        ssh_keys=[{"name": "demo-key"}],
        labels={"stackfleet-cluster": "demo", "stackfleet-role": "etcd"},
        user_data=userdata,
    )
    assert op["state"] == "pending"  # asynchronous, as exoscale's operations are
    instance = op["reference"]["id"]
    assert client.get_instance(id=instance)["state"] == "starting"
    assert _created(client, op) == instance

    got = client.get_instance(id=instance)
    assert got["state"] == "running"
    assert got["user-data"] == userdata
    assert got["template"]["default-user"] == "core"
    assert [k["name"] for k in got["ssh-keys"]] == ["demo-key"]
    assert got["public-ip"].startswith(("198.51.100.", "203.0.113."))  # documentation ranges
    listed = client.list_instances(labels="stackfleet-cluster=demo stackfleet-role=etcd")
    assert [i["name"] for i in listed["instances"]] == ["demo-etcd-1"]
    assert client.list_instances(labels="stackfleet-cluster=other")["instances"] == []

    client.wait(client.stop_instance(id=instance)["id"])
    assert client.get_instance(id=instance)["state"] == "stopped"
    client.wait(client.start_instance(id=instance)["id"])
    client.wait(client.update_instance(id=instance, labels={"stackfleet-cluster": "demo2"})["id"])
    assert client.get_instance(id=instance)["labels"] == {"stackfleet-cluster": "demo2"}

    with pytest.raises(ExoscaleAPIClientException) as in_use:
        client.delete_security_group(id=group)
    assert in_use.value.response.status_code == 409
    client.wait(client.delete_instance(id=instance)["id"])
    assert client.list_instances()["instances"] == []
    client.wait(client.delete_security_group(id=group)["id"])
    client.wait(client.delete_ssh_key(name="demo-key")["id"])
    assert client.list_security_groups()["security-groups"] == []
    assert client.list_ssh_keys()["ssh-keys"] == []
    assert assert_all_valid(sim) > 20


def test_security_group_with_group_to_group_rule(client: Any, sim: ExoscaleSimulator) -> None:
    etcd = _created(client, client.create_security_group(name="demo-etcd"))
    nodes = _created(client, client.create_security_group(name="demo-nodes"))
    client.wait(
        client.add_rule_to_security_group(
            id=etcd,
            flow_direction="ingress",
            protocol="tcp",
            start_port=2379,
            end_port=2379,
            security_group={"id": nodes},
        )["id"]
    )
    client.wait(
        client.add_rule_to_security_group(
            id=etcd,
            flow_direction="ingress",
            protocol="tcp",
            start_port=22,
            end_port=22,
            network="203.0.113.0/24",
        )["id"]
    )
    rules = client.get_security_group(id=etcd)["rules"]
    by_port = {r["start-port"]: r for r in rules}
    assert by_port[2379]["security-group"] == {
        "id": nodes,
        "name": "demo-nodes",
        "visibility": "private",
    }
    assert by_port[22]["network"] == "203.0.113.0/24"
    names = {g["name"] for g in client.list_security_groups()["security-groups"]}
    assert names == {"demo-etcd", "demo-nodes"}

    with pytest.raises(ExoscaleAPIClientException) as duplicate:
        client.add_rule_to_security_group(
            id=etcd,
            flow_direction="ingress",
            protocol="tcp",
            start_port=2379,
            end_port=2379,
            security_group={"name": "demo-nodes"},
        )
    assert duplicate.value.response.status_code == 409
    with pytest.raises(ExoscaleAPIClientException) as named:
        client.delete_security_group(id=nodes)  # etcd's rule still names it
    assert "demo-etcd" in named.value.response.json()["message"]

    client.wait(client.delete_rule_from_security_group(id=etcd, rule_id=by_port[2379]["id"])["id"])
    client.wait(client.delete_security_group(id=nodes)["id"])
    client.wait(client.delete_security_group(id=etcd)["id"])
    assert client.list_security_groups()["security-groups"] == []
    assert_all_valid(sim)


def test_ssh_keys_and_anti_affinity_groups(client: Any, sim: ExoscaleSimulator) -> None:
    client.wait(client.register_ssh_key(name="demo-key", public_key=PUBLIC_KEY)["id"])
    key = client.get_ssh_key(name="demo-key")
    # MD5 of the key blob, as `ssh-keygen -E md5 -lf` prints it.
    assert key["fingerprint"] == "65:96:2d:fc:e8:d5:a9:11:64:0c:0f:ea:00:6e:5b:bd"
    with pytest.raises(ExoscaleAPIClientException) as twice:
        client.register_ssh_key(name="demo-key", public_key=PUBLIC_KEY)
    assert twice.value.response.status_code == 409
    with pytest.raises(ExoscaleAPIClientException) as garbage:
        client.register_ssh_key(name="other", public_key="not a key")
    assert "public-key" in garbage.value.response.json()["message"]

    group = _created(client, client.create_anti_affinity_group(name="demo-etcd"))
    template, kind = _catalog(client, "ubuntu")
    op = client.create_instance(
        template={"id": template},
        instance_type={"id": kind},
        disk_size=10,
        anti_affinity_groups=[{"id": group}],
    )
    instance = _created(client, op)
    assert client.get_anti_affinity_group(id=group)["instances"] == [{"id": instance}]
    client.wait(client.delete_instance(id=instance)["id"])
    client.wait(client.delete_anti_affinity_group(id=group)["id"])
    client.wait(client.delete_ssh_key(name="demo-key")["id"])
    assert client.list_anti_affinity_groups()["anti-affinity-groups"] == []
    assert client.list_ssh_keys()["ssh-keys"] == []
    assert_all_valid(sim)


def test_user_data_over_the_api_limit_is_refused(client: Any, sim: ExoscaleSimulator) -> None:
    template, kind = _catalog(client, "ubuntu")
    # 24576 raw bytes are exactly 32768 base64 characters: create-instance's maxLength.
    at_limit = base64.b64encode(b"x" * 24576).decode()
    over = base64.b64encode(b"x" * 24579).decode()
    assert (len(at_limit), len(over)) == (32768, 32772)

    fits = client.create_instance(
        template={"id": template}, instance_type={"id": kind}, disk_size=10, user_data=at_limit
    )
    _created(client, fits)
    with pytest.raises(ExoscaleAPIClientException) as refused:
        client.create_instance(
            template={"id": template}, instance_type={"id": kind}, disk_size=10, user_data=over
        )
    assert refused.value.response.status_code == 400
    message = refused.value.response.json()["message"]
    assert "user-data: 32772 characters" in message and "at most 32768" in message
    assert len(client.list_instances()["instances"]) == 1


def test_invalid_bodies_get_a_useful_400(client: Any, sim: ExoscaleSimulator) -> None:
    template, kind = _catalog(client, "ubuntu")
    with pytest.raises(ExoscaleAPIClientException) as missing:
        client.create_instance(template={"id": template}, instance_type={"id": kind})
    assert "'disk-size' is a required property" in missing.value.response.json()["message"]
    with pytest.raises(ExoscaleAPIClientException) as ports:
        client.add_rule_to_security_group(
            id=_created(client, client.create_security_group(name="g")),
            flow_direction="ingress",
            protocol="tcp",
            start_port=0,
            end_port=22,
            network="0.0.0.0/0",
        )
    assert "start-port: 0 is less than the minimum of 1" in ports.value.response.json()["message"]
    with pytest.raises(ExoscaleAPIClientException) as not_uuid:
        client.get_instance(id="etcd-1")
    assert not_uuid.value.response.status_code == 400
    refused = [e for e in log_entries(sim) if e["status"] == 400]
    assert len(refused) == 3
    assert refused[0]["request_schema"] != "ok"  # the verdict is in the log too
