"""A rendering input for tests: N etcd + 1 control + W workers with a real PKI on disk.

Imported by name (tests/ is on the path; a conftest module cannot be imported reliably).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackfleet.artifacts import ArtifactSet, default_artifacts
from stackfleet.cloudconfig_templates.model import NodeInfo, RenderInput
from stackfleet.pki import load_or_create
from stackfleet.spec import parse_spec

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKhLxkRfJr1l5wNbiQ6w8Zb0H9n5kT3p1xq3d7P8e4Vf op@ci"


def cluster_nodes(etcd: int, workers: int) -> tuple[NodeInfo, ...]:
    return (
        *(NodeInfo(f"etcd-{i}", "etcd", f"10.231.0.{11 + i}") for i in range(etcd)),
        NodeInfo("control-0", "control", "10.231.0.21"),
        *(NodeInfo(f"worker-{i}", "worker", f"10.231.0.{31 + i}") for i in range(workers)),
    )


def spec_artifacts(artifacts: dict[str, Any], kubernetes_version: str = "1.31.4") -> ArtifactSet:
    """The artifact set a spec with this `artifacts:` section renders with (pins applied)."""
    spec = parse_spec(
        {
            "name": "demo",
            "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
            "roles": {"etcd": {"count": 1}},
            "kubernetes": {"version": kubernetes_version},
            "artifacts": artifacts,
        }
    )
    return default_artifacts(spec.kubernetes_version, spec.artifacts_base_url, spec.artifact_pins)


def make_input(
    pki_dir: Path,
    flavor: str,
    etcd: int = 3,
    workers: int = 5,
    artifacts: ArtifactSet | None = None,
) -> RenderInput:
    nodes = cluster_nodes(etcd, workers)
    return RenderInput(
        cluster="demo",
        flavor=flavor,
        nodes=nodes,
        kubernetes_version="1.31.4",
        pod_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/12",
        flannel_backend="vxlan",
        ssh_authorized_keys=(SSH_KEY,),
        artifacts=artifacts or default_artifacts("1.31.4"),
        pki=load_or_create(pki_dir, "demo", nodes),
        api_endpoint="10.231.0.21:6443",
    )
