"""The engine's plan, up, down and lock logic on the in-memory provider, in milliseconds.

Real: the engine (plan, up, down, lock, the create pipeline, bootstrap's rendering of every
node's cloud-config with a real PKI under a private $STACKFLEET_HOME). The cloud is
tests/sf_fakecloud.py's in-memory provider (held to the same contract as the CloudStack
provider by tests/contract/); its VMs run nothing, so no SSH and no etcd are asked.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sf_fakecloud import FakeCloud, FakeProvisioner

from stackfleet.errors import Conflict, LimitExceeded
from stackfleet.provisioners.base import BOOTSTRAP_TAG, MachineState
from stackfleet.provisioners.down import down
from stackfleet.provisioners.events import Silent
from stackfleet.provisioners.plan import make_plan
from stackfleet.provisioners.up import UpResult
from stackfleet.provisioners.up import up as engine_up
from stackfleet.spec import Spec, parse_spec
from stackfleet.statestore import guard_up


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKFLEET_HOME", str(tmp_path / "home"))


def _spec(etcd: int = 3, workers: int = 2, bootstrap: str = "auto") -> Spec:
    return parse_spec(
        {
            "name": "fk",
            "cloud": {"zone": "fake-1", "concurrency": 3, "bootstrap": bootstrap},
            "os": "flatcar",
            "roles": {
                "etcd": {"count": etcd},
                "control": {"count": 1},
                "workers": {"count": workers},
            },
            "access": {"ssh_cidrs": ["203.0.113.0/24"]},
        }
    )


def up(spec: Spec, prov: FakeProvisioner, events: Silent, **kw: Any) -> UpResult:
    """As the CLI runs it: inside the state store's guard (the PKI, its fingerprints)."""
    with guard_up(spec.name, spec.state, prov):
        return engine_up(spec, prov, events, **kw)


def _names(prov: FakeProvisioner) -> list[str]:
    return sorted(m.name for m in prov.live_state("fk").machines)


def test_up_builds_the_cluster_and_a_second_up_changes_nothing() -> None:
    cloud = FakeCloud()
    prov = FakeProvisioner(cloud, concurrency=3)
    result = up(_spec(), prov, Silent())
    assert result.changed
    live = prov.live_state("fk")
    assert _names(prov) == [
        "fk-control-1", "fk-etcd-1", "fk-etcd-2", "fk-etcd-3", "fk-worker-1", "fk-worker-2",
    ]  # fmt: skip
    assert all(m.state == MachineState.RUNNING for m in live.machines)
    assert all(m.tags.get(BOOTSTRAP_TAG) == "done" for m in live.machines)
    # allocate (IPs known at create): every VM booted once, with its final userdata
    assert not [c for c in cloud.calls if c.startswith("stop")]
    assert all("etcd" in vm.userdata or vm.role != "etcd" for vm in cloud.vms.values())
    assert cloud.locks == {}, "the lock is released"

    again = up(_spec(), prov, Silent())
    assert not again.changed and again.plan.is_empty()


def test_a_broken_machine_is_replaced_and_scaling_down_destroys_workers() -> None:
    cloud = FakeCloud()
    prov = FakeProvisioner(cloud)
    up(_spec(), prov, Silent())
    broken = next(vm for vm in cloud.vms.values() if vm.name == "fk-worker-2")
    broken.state = MachineState.ERROR

    plan = make_plan(_spec(), prov)
    verbs = {(a.verb, a.name) for a in plan.actions() if a.kind == "machine"}
    assert verbs == {("delete", "fk-worker-2"), ("create", "fk-worker-2")}
    up(_spec(), prov, Silent())
    worker2 = next(vm for vm in cloud.vms.values() if vm.name == "fk-worker-2")
    assert worker2.id != broken.id and worker2.state == MachineState.RUNNING

    up(_spec(workers=1), prov, Silent(), approve=lambda p: None)
    assert "fk-worker-2" not in _names(prov) and "fk-worker-1" in _names(prov)


class NewAddressOnFirstStart(FakeProvisioner):
    """A zone that gives one VM another IP the first time it is started again."""

    def __init__(self, cloud: FakeCloud, name: str) -> None:
        super().__init__(cloud)
        self.moves = name

    def begin_start(self, machine_id: str) -> str:
        vm = self.cloud.vms[machine_id]
        if vm.name == self.moves:
            vm.ip, self.moves = self.cloud.new_ip(), ""
        return super().begin_start(machine_id)


def test_a_new_nodes_changed_ip_rerenders_every_node_and_marks_only_the_new_one() -> None:
    """The reboot strategy writes the final userdata and starts the VM; if its IP changed,
    every document naming it is stale, so every node is rewritten. The nodes marked
    bootstrapped before keep their mark (a tag is written once: marking them again failed
    the run on CloudStack)."""
    cloud = FakeCloud()
    up(_spec(bootstrap="reboot"), FakeProvisioner(cloud), Silent())
    before = {vm.name: vm.ip for vm in cloud.vms.values()}
    prov = NewAddressOnFirstStart(cloud, "fk-worker-3")
    calls = len(cloud.calls)
    up(_spec(workers=3, bootstrap="reboot"), prov, Silent())
    moved = next(vm for vm in cloud.vms.values() if vm.name == "fk-worker-3")
    assert moved.ip not in before.values() and moved.ip in moved.userdata
    # The new node's final userdata, then (its IP changed) every node's.
    assert [c for c in cloud.calls[calls:] if c.startswith("set_userdata")] == [
        "set_userdata 1",
        "set_userdata 7",
    ]
    assert {vm.name: vm.ip for vm in cloud.vms.values() if vm.name in before} == before
    assert all(vm.tags.get(BOOTSTRAP_TAG) == "done" for vm in cloud.vms.values())
    assert up(_spec(workers=3, bootstrap="reboot"), prov, Silent()).plan.is_empty()


def test_a_failed_deploy_is_destroyed_and_tried_again() -> None:
    cloud = FakeCloud()
    cloud.fail_deploys["fk-worker-1"] = 1
    prov = FakeProvisioner(cloud)
    up(_spec(etcd=1, workers=1), prov, Silent())
    assert cloud.calls.count("deploy fk-worker-1") == 2
    assert _names(prov) == ["fk-control-1", "fk-etcd-1", "fk-worker-1"]
    assert all(vm.state == MachineState.RUNNING for vm in cloud.vms.values())


def test_down_empties_the_cloud_and_a_second_down_is_fine() -> None:
    cloud = FakeCloud()
    prov = FakeProvisioner(cloud)
    up(_spec(), prov, Silent())
    result = down("fk", prov, Silent())
    assert (result.machines, result.groups, result.keys, result.spread_groups) == (6, 3, 1, 1)
    assert prov.live_state("fk").is_empty() and not cloud.vms and not cloud.groups
    assert not down("fk", prov, Silent()).anything
    assert cloud.locks == {}


def test_a_lock_held_by_a_live_run_refuses_and_changes_nothing() -> None:
    cloud = FakeCloud()
    prov = FakeProvisioner(cloud)
    cloud.locks["fk"] = f"other-host:4242:{int(time.time())}"
    with pytest.raises(Conflict, match="pid 4242 on other-host"):
        up(_spec(), prov, Silent())
    assert not cloud.vms and cloud.locks["fk"].startswith("other-host")
    with pytest.raises(Conflict):
        down("fk", prov, Silent())


def test_a_stale_lock_is_taken_over() -> None:
    cloud = FakeCloud()
    prov = FakeProvisioner(cloud)
    cloud.locks["fk"] = f"{socket.gethostname()}:999999999:{int(time.time())}"  # no such pid
    up(_spec(etcd=1, workers=1), prov, Silent())
    assert len(cloud.vms) == 3 and cloud.locks == {}


def test_the_account_limit_is_checked_before_anything_is_created() -> None:
    cloud = FakeCloud(vm_limit=4)
    prov = FakeProvisioner(cloud)
    with pytest.raises(LimitExceeded, match="may create 4 more VM"):
        up(_spec(), prov, Silent())
    assert not cloud.vms and not cloud.groups and not cloud.keys
