"""A simulated VM runs nothing: the client says so in one line and never dials its address.

Real: the CLI, the embedded simulator over signed HTTP. Simulated: the VMs (hypervisor
`Simulator`, as CloudStack's own simulator reports them). Every socket the client opens
to a node goes through `reach.open_tcp`; the test makes that raise, so any attempt to
dial a 10.x address would fail the test loudly.
"""

from __future__ import annotations

import pytest
from sf_testkit import Workspace

from stackfleet.provisioners import reach


@pytest.fixture
def no_dialing(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    dialled: list[tuple[str, int]] = []

    def refuse(host: str, port: int, timeout_s: float) -> object:
        dialled.append((host, port))
        raise AssertionError(f"dialled {host}:{port}")

    monkeypatch.setattr(reach, "open_tcp", refuse)
    monkeypatch.setattr("stackfleet.provisioners.ssh_client.open_tcp", refuse)
    return dialled


def test_simulated_vms_report_the_simulator_hypervisor(ws: Workspace) -> None:
    spec = ws.spec("sim1", roles={"etcd": {"count": 1}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    from stackfleet.simulator import Simulator, SimulatorConfig

    with Simulator.start(SimulatorConfig(state_path=ws.home / "simulator" / "state.sqlite")) as s:
        from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
        from stackfleet.provisioners.cloudstack.credentials import Credentials

        api = CloudStackAPI(Credentials(s.endpoint, s.api_key, s.secret, "test"))
        vms = api.call("listVirtualMachines", {"name": "sim1-etcd-1"})["virtualmachine"]
    assert [vm["hypervisor"] for vm in vms] == ["Simulator"]


def test_up_does_not_wait_on_simulated_vms_and_says_why(
    ws: Workspace, no_dialing: list[tuple[str, int]]
) -> None:
    spec = ws.spec("sim2", roles={"etcd": {"count": 1}})
    result = ws.run("up", "-f", str(spec))
    assert result.exit_code == 0, result.stderr
    assert "not waiting for etcd health: the simulator's VMs run nothing" in result.stderr
    assert no_dialing == []


def test_up_wait_refuses_simulated_vms_in_one_line(
    ws: Workspace, no_dialing: list[tuple[str, int]]
) -> None:
    spec = ws.spec("sim3", roles={"etcd": {"count": 1}})
    result = ws.run("up", "-f", str(spec), "--wait")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert "simulated VM(s) (hypervisor Simulator) run nothing" in lines[-1]
    assert "Traceback" not in result.stderr
    assert no_dialing == []


def test_ssh_to_a_simulated_vm_is_one_line_and_no_connection(
    ws: Workspace, no_dialing: list[tuple[str, int]]
) -> None:
    spec = ws.spec("sim4", roles={"etcd": {"count": 1}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    result = ws.run("ssh", "-f", str(spec), "sim4-etcd-1", "--", "true")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: sim4-etcd-1: simulated VM(s) (hypervisor Simulator) run nothing, so there is "
        "nothing to connect to (the simulator's QEMU hypervisor boots real ones)"
    ]
    assert no_dialing == []


def test_after_the_embedded_simulator_nothing_dials_its_addresses_from_the_host(
    ws: Workspace,
) -> None:
    """A connection attempted once the embedded simulator's session has closed (as `ssh`
    does, after listing the nodes) must not fall back to the host's network."""
    spec = ws.spec("sim5", roles={"etcd": {"count": 1}})
    assert ws.run("status", "-f", str(spec)).exit_code == 0
    with pytest.raises(reach.NothingRuns, match="reachable only inside"):
        reach.open_tcp("10.12.0.10", 22, 1.0)


def test_a_guest_that_names_its_namespace_is_dialled_only_inside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client of `simulator serve --hypervisor qemu` that did not export
    STACKFLEET_NODE_NETNS: the VM's detail names the namespace, and that is where the
    socket is made (here a namespace that does not exist: refused, nothing dialled)."""
    from stackfleet.provisioners.base import Machine

    monkeypatch.delenv(reach.ENV, raising=False)
    monkeypatch.setattr(reach, "_namespace", None)
    monkeypatch.setattr(reach, "_confined", False)
    guest = Machine("id", "n-etcd-1", "etcd", "Running", "10.12.0.10", netns="sfsim-absent")
    reach.check_reachable([guest])
    assert reach.namespace() == "sfsim-absent"
    with pytest.raises(reach.CloudError, match="no such network namespace"):
        reach.open_tcp("10.12.0.10", 22, 1.0)
