"""Certificates verify (chain, SANs, key usages, validity); re-runs keep CAs; files are 0600."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from stackfleet.artifacts import SUPPORTED_KUBERNETES_VERSIONS, default_artifacts
from stackfleet.cloudconfig_templates.model import NodeInfo
from stackfleet.errors import BadInput
from stackfleet.pki import admin_kubeconfig, load_or_create

NODES = (
    NodeInfo("etcd-0", "etcd", "10.231.0.11"),
    NodeInfo("etcd-1", "etcd", "10.231.0.12"),
    NodeInfo("control-0", "control", "10.231.0.21"),
    NodeInfo("worker-0", "worker", "10.231.0.31"),
)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_member_certs_chain_sans_and_usages(tmp_path: Path):
    pki = load_or_create(tmp_path / "pki", "demo", NODES)
    ca = _cert(pki.etcd_ca.cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for node in NODES[:2]:
        cert = _cert(pki.etcd_members[node.name].cert_pem)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {node.name, "localhost"}
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address(node.ip),
            ipaddress.ip_address("127.0.0.1"),
        }
        assert _eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        now = dt.datetime.now(dt.UTC)
        assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert set(pki.etcd_members) == {"etcd-0", "etcd-1"}
    for name in ("apiserver", "flannel", "operator"):
        cert = _cert(pki.etcd_clients[name].cert_pem)
        cert.verify_directly_issued_by(ca)
        assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_rerun_keeps_cas_and_changed_ip_reissues_only_that_node(tmp_path: Path):
    d = tmp_path / "pki"
    first = load_or_create(d, "demo", NODES)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    second = load_or_create(d, "demo", NODES)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert second.ca_cert_hash == first.ca_cert_hash
    moved = (replace(NODES[0], ip="10.231.0.99"), *NODES[1:])
    load_or_create(d, "demo", moved)
    after = {p.name: p.read_bytes() for p in d.iterdir()}
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"etcd-member-etcd-0.crt", "etcd-member-etcd-0.key"}


def test_files_are_private(tmp_path: Path):
    d = tmp_path / "pki"
    load_or_create(d, "demo", NODES)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for path in d.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert not list(d.glob(".*.tmp"))


def test_token_hash_and_host_keys(tmp_path: Path):
    pki = load_or_create(tmp_path / "pki", "demo", NODES)
    assert len(pki.bootstrap_token) == 23 and pki.bootstrap_token[6] == "."
    spki = (
        _cert(pki.kube_ca.cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert pki.ca_cert_hash == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert set(pki.ssh_host_keys) == {n.name for n in NODES}
    assert pki.ssh_host_keys["etcd-0"].public_openssh.startswith("ssh-ed25519 ")
    assert pki.bootstrap_token not in repr(pki)


def test_admin_kubeconfig_is_signed_by_the_kube_ca(tmp_path: Path):
    import base64

    pki = load_or_create(tmp_path / "pki", "demo", NODES)
    cfg = yaml.safe_load(admin_kubeconfig(pki, "demo", "10.231.0.21:6443"))
    assert cfg["clusters"][0]["cluster"]["server"] == "https://10.231.0.21:6443"
    pem = base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]).decode()
    cert = _cert(pem)
    cert.verify_directly_issued_by(_cert(pki.kube_ca.cert_pem))
    assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_unsupported_kubernetes_version_names_the_field():
    with pytest.raises(BadInput, match=r"^kubernetes\.version: "):
        default_artifacts("1.29.0")
    for version in SUPPORTED_KUBERNETES_VERSIONS:
        arts = default_artifacts(version)
        assert arts.kubelet.url.startswith(f"https://dl.k8s.io/release/v{version}/")
        assert all(len(a.sha256) == 64 for a in (arts.kubelet, arts.kubeadm, arts.etcd))
