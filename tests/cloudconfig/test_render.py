"""Rendered userdata for 1, 3 and 5 etcd members passes every validator, in both flavors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import yaml

from stackfleet.cloudconfig_templates.model import RenderInput
from stackfleet.cloudconfig_templates.render import (
    render_cluster,
    render_node,
    render_stage1,
    userdata_size,
)
from stackfleet.cloudconfig_templates.validate import (
    etcd_env,
    files_of,
    units_of,
    validate_cluster,
    validate_document,
)
from stackfleet.errors import BadInput
from stackfleet.etcd_timing import EtcdTiming

CLOUDSTACK_DEFAULT_LIMIT = 32768

Build = Callable[..., RenderInput]


@pytest.mark.parametrize("flavor", ["flatcar", "ubuntu"])
@pytest.mark.parametrize("members", [1, 3, 5])
def test_every_document_passes_the_validators(
    render_input: Build, flavor: str, members: int, need_tools
):
    need_tools(flavor)
    inp = render_input(flavor, etcd=members, workers=2)
    docs = render_cluster(inp)
    assert validate_cluster(inp, docs) == []
    for name, text in docs.items():
        assert userdata_size(text) < CLOUDSTACK_DEFAULT_LIMIT, name


@pytest.mark.parametrize("flavor", ["flatcar", "ubuntu"])
def test_stage1_is_minimal_and_valid(render_input: Build, flavor: str, need_tools):
    need_tools(flavor)
    inp = render_input(flavor, etcd=1, workers=1)
    for node in inp.nodes:
        text = render_stage1(inp, node.name)
        assert validate_document(flavor, node.role, text) == []
        doc = yaml.safe_load(text)
        assert doc["hostname"] == node.name
        assert "10.231." not in text  # no IP-dependent content
        pub = inp.pki.ssh_host_keys[node.name].public_openssh
        assert pub in text


def test_etcd_flags_name_every_member(render_input: Build):
    inp = render_input("flatcar", etcd=3, workers=0)
    docs = render_cluster(inp)
    env = etcd_env(docs["etcd-1"])
    assert env["ETCD_NAME"] == "etcd-1"
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "etcd-0=https://10.231.0.11:2380,etcd-1=https://10.231.0.12:2380,"
        "etcd-2=https://10.231.0.13:2380"
    )
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"


@pytest.mark.parametrize("flavor", ["flatcar", "ubuntu"])
def test_etcd_timing_is_rendered_into_every_member_only_when_set(
    render_input: Build, flavor: str
) -> None:
    """etcd's defaults render no timing at all (documents as before it was a setting); a
    spec's timing reaches every member, and the documents still pass the validators."""
    inp = render_input(flavor, etcd=3, workers=1)
    for name, text in render_cluster(inp).items():
        if name.startswith("etcd-"):
            env = etcd_env(text)
            assert "ETCD_HEARTBEAT_INTERVAL" not in env and "ETCD_ELECTION_TIMEOUT" not in env
    tuned = replace(inp, etcd_timing=EtcdTiming(heartbeat_ms=500, election_timeout_ms=5000))
    docs = render_cluster(tuned)
    members = [name for name in docs if name.startswith("etcd-")]
    assert len(members) == 3
    for name in members:
        env = etcd_env(docs[name])
        assert (env["ETCD_HEARTBEAT_INTERVAL"], env["ETCD_ELECTION_TIMEOUT"]) == ("500", "5000")
    assert validate_cluster(tuned, docs) == []


@pytest.mark.parametrize("flavor", ["flatcar", "ubuntu"])
def test_every_download_is_checked_by_sha256(render_input: Build, flavor: str):
    inp = render_input(flavor, etcd=1, workers=1)
    for name, text in render_cluster(inp).items():
        files = files_of(yaml.safe_load(text))
        manifest = files["/etc/stackfleet/artifacts.list"]
        for line in manifest.splitlines():
            sha, url, *_ = line.split()
            assert len(sha) == 64 and url.startswith("https://"), name
        assert "sha256sum --check" in files["/opt/stackfleet/bin/fetch-artifacts"]


def test_workers_pin_the_ca_and_never_skip_verification(render_input: Build):
    inp = render_input("ubuntu", etcd=1, workers=1)
    text = render_node(inp, "worker-0")
    join = yaml.safe_load(files_of(yaml.safe_load(text))["/etc/kubernetes/kubeadm.yaml"])
    bootstrap = join["discovery"]["bootstrapToken"]
    assert bootstrap["caCertHashes"] == [inp.pki.ca_cert_hash]
    assert bootstrap["apiServerEndpoint"] == "10.231.0.21:6443"
    assert "unsafe-skip-ca-verification" not in text


def test_control_uses_external_etcd_with_a_client_cert(render_input: Build):
    inp = render_input("flatcar", etcd=3, workers=0)
    files = files_of(yaml.safe_load(render_node(inp, "control-0")))
    docs = list(yaml.safe_load_all(files["/etc/kubernetes/kubeadm.yaml"]))
    external = docs[1]["etcd"]["external"]
    assert external["endpoints"] == [f"https://10.231.0.{i}:2379" for i in (11, 12, 13)]
    assert files["/etc/stackfleet/pki/kube/apiserver-etcd-client.crt"] == (
        inp.pki.etcd_clients["apiserver"].cert_pem
    )
    assert inp.pki.etcd_ca.key_pem not in files.values()  # the etcd CA key never travels


def test_flatcar_masks_the_stock_etcd_and_flannel_units(render_input: Build):
    inp = render_input("flatcar", etcd=1, workers=1)
    units = yaml.safe_load(render_node(inp, "worker-0"))["coreos"]["units"]
    masked = {u["name"] for u in units if u.get("mask")}
    assert masked == {"etcd-member.service", "flanneld.service"}


def test_mirror_replaces_the_host_only(tmp_path):
    from stackfleet.artifacts import default_artifacts

    up, mirror = default_artifacts("1.31.4"), default_artifacts("1.31.4", "http://m.local/k8s/")
    assert mirror.etcd.url == f"http://m.local/k8s/{up.etcd.name}"
    assert mirror.etcd.sha256 == up.etcd.sha256


def test_kube_nodes_need_the_api_endpoint(render_input: Build):
    from dataclasses import replace

    inp = replace(render_input("flatcar", etcd=1, workers=1), api_endpoint=None)
    render_node(inp, "etcd-0")
    with pytest.raises(BadInput, match="API endpoint"):
        render_node(inp, "worker-0")


def test_units_are_found_in_both_flavors(render_input: Build):
    for flavor in ("flatcar", "ubuntu"):
        inp = render_input(flavor, etcd=1, workers=0)
        units = units_of(flavor, yaml.safe_load(render_node(inp, "etcd-0")))
        assert "stackfleet-etcd.service" in units
