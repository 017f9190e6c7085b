"""When scale-down does not drain, and how a late worker's join token reaches its userdata.

Real: the renderer (Jinja2 templates, the cluster PKI on disk) and k8s_admin's decisions.
Nothing is dialled here: a simulated control node runs nothing, and the tests fail if a
connection is even attempted. The drain itself, over SSH with kubectl, is in
test_k8s_admin.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stackfleet.cloudconfig_templates.validate import files_of
from stackfleet.flavors import FLAVORS
from stackfleet.provisioners import bootstrap, k8s_admin
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine
from stackfleet.spec import Spec, parse_spec

DONE = {BOOTSTRAP_TAG: "done"}


def spec(ssh_cidrs: list[str] | None = None) -> Spec:
    return parse_spec(
        {
            "name": "kad",
            "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
            "os": "flatcar",
            "roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}},
            "access": {
                "ssh_cidrs": ["203.0.113.0/24"] if ssh_cidrs is None else ssh_cidrs,
                "api_cidrs": ["203.0.113.0/24"],
            },
        }
    )


class Notes:
    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, text: str) -> None:
        self.phases.append(text)

    def progress(self, what: str, done: int, total: int) -> None:
        pass


def never(machine: Machine) -> Any:
    raise AssertionError(f"dialled {machine.name}")


CONTROL = Machine("c", "kad-control-1", "control", "Running", "10.1.0.5", tags=DONE)
WORKER = Machine("w", "kad-worker-2", "worker", "Running", "10.1.0.7", tags=DONE)


@pytest.mark.parametrize(
    ("control", "ssh_cidrs", "why"),
    [
        (
            Machine(
                "c", "kad-control-1", "control", "Running", "10.1.0.5", tags=DONE, simulated=True
            ),
            None,
            "the simulator's VMs run nothing",
        ),
        (
            Machine("c", "kad-control-1", "control", "Stopped", "10.1.0.5", tags=DONE),
            None,
            "control node kad-control-1 is Stopped",
        ),
        (CONTROL, [], "access.ssh_cidrs is empty"),
        (None, None, "the cluster has no control node"),
    ],
)
def test_scale_down_skips_the_drain_with_a_note_where_nothing_can_answer(
    control: Machine | None, ssh_cidrs: list[str] | None, why: str
) -> None:
    notes = Notes()
    machines = [m for m in (control, WORKER) if m is not None]
    k8s_admin.drain_before_destroy(spec(ssh_cidrs), machines, [WORKER], notes, connect=never)
    assert len(notes.phases) == 1
    assert notes.phases[0].startswith("not draining kad-worker-2: ") and why in notes.phases[0]


def test_skip_drain_and_etcd_only_removals_dial_nothing() -> None:
    notes = Notes()
    k8s_admin.drain_before_destroy(spec(), [CONTROL, WORKER], [WORKER], notes, 30, True, never)
    assert notes.phases == ["not draining kad-worker-2: --skip-drain was given"]
    etcd = Machine("e", "kad-etcd-3", "etcd", "Running", "10.1.0.9", tags=DONE)
    quiet = Notes()
    k8s_admin.drain_before_destroy(spec(), [CONTROL, etcd], [etcd], quiet, connect=never)
    assert quiet.phases == []


def test_a_simulated_control_node_gets_no_fresh_token_and_says_so() -> None:
    sim = Machine("c", "kad-control-1", "control", "Running", "10.1.0.5", tags=DONE, simulated=True)
    notes = Notes()
    assert k8s_admin.fresh_join_token(spec(), [sim], notes, connect=never) is None
    assert len(notes.phases) == 1 and "first bootstrap token" in notes.phases[0]
    assert "run nothing" in notes.phases[0]


def test_kubectl_is_where_the_control_nodes_cloud_config_installs_it() -> None:
    # Every flavor installs kubectl where KubectlPaths looks for it (Flavor.bin_dir).
    assert all(k8s_admin.KubectlPaths().kubectl == f"{f.bin_dir}/kubectl" for f in FLAVORS.values())


def test_a_late_worker_joins_with_the_fresh_token_and_init_keeps_its_own(tmp_path: Path) -> None:
    """The control node's `kubeadm init` config keeps the PKI's token; a worker rendered
    with a fresh token joins with that one (and without one, with the PKI's)."""
    nodes = [
        bootstrap.NodeAddress("kad-etcd-1", "etcd", "10.1.0.3"),
        bootstrap.NodeAddress("kad-control-1", "control", "10.1.0.5"),
        bootstrap.NodeAddress("kad-worker-1", "worker", "10.1.0.7"),
    ]
    names = ["kad-control-1", "kad-worker-1"]
    fresh = "abcdef.0123456789abcdef"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhLxkRfJr1l5wNbiQ6w8Zb0H9n5kT3p1xq3d7P8e4Vf op"
    late = bootstrap.render_final(spec(), nodes, names, key, tmp_path, join_token=fresh)
    first = bootstrap.render_final(spec(), nodes, names, key, tmp_path)
    pki_token = (tmp_path / "bootstrap-token").read_text().strip()
    assert pki_token != fresh

    def kubeadm_docs(text: str) -> list[Any]:
        config = files_of(yaml.safe_load(text))["/etc/kubernetes/kubeadm.yaml"]
        return list(yaml.safe_load_all(config))

    def join_token(text: str) -> str:
        return str(kubeadm_docs(text)[0]["discovery"]["bootstrapToken"]["token"])

    assert join_token(late["kad-worker-1"]) == fresh
    assert join_token(first["kad-worker-1"]) == pki_token
    init = kubeadm_docs(late["kad-control-1"])[0]
    assert init["kind"] == "InitConfiguration"
    assert init["bootstrapTokens"][0]["token"] == pki_token
