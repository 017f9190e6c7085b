"""The cluster's PKI: CAs, etcd member/client certificates, kubeadm material, SSH host keys.

ECDSA P-256 everywhere: an etcd node's userdata stays near 9 KB (RSA made it ~16 KB), far
under CloudStack's 32768 base64 characters. CAs are created once and never rotated by a
re-run; leaf certificates are reissued only when missing, no longer matching the node's
name/IP, or signed by another CA; near expiry they are `renew`'s to reissue, together with
the rollout, never `up`'s. Every file is written 0600 in a 0700
directory, atomically (temp file + rename), so a kill mid-write never leaves half a key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stackfleet.errors import BadInput
from stackfleet.roles import role

if TYPE_CHECKING:
    from stackfleet.cloudconfig_templates.model import NodeInfo

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
ETCD_CLIENTS = ("apiserver", "flannel", "operator")


@dataclass(frozen=True)
class CertKey:
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class SSHHostKey:
    key_type: str  # "ed25519": the cloud-init ssh_keys / sshd file-name suffix
    private_openssh: str
    public_openssh: str  # "ssh-ed25519 AAAA..." (what paramiko pins)


@dataclass(repr=False)
class ClusterPKI:
    cluster: str
    etcd_ca: CertKey
    kube_ca: CertKey
    front_proxy_ca: CertKey
    service_account_private_pem: str
    service_account_public_pem: str
    etcd_members: dict[str, CertKey] = field(default_factory=dict)  # etcd node -> cert
    etcd_clients: dict[str, CertKey] = field(default_factory=dict)  # apiserver/flannel/operator
    ssh_host_keys: dict[str, SSHHostKey] = field(default_factory=dict)  # any node -> key
    bootstrap_token: str = ""

    def __repr__(self) -> str:
        # Keys and tokens must never end up in a log line or a test failure message.
        return f"ClusterPKI(cluster={self.cluster!r}, members={sorted(self.etcd_members)})"

    @property
    def ca_cert_hash(self) -> str:
        """kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA's SubjectPublicKeyInfo."""
        return ca_cert_hash(self.kube_ca.cert_pem)


# ---- pure helpers -------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _key_usage(signs_certs: bool) -> x509.KeyUsage:
    """ECDSA keys sign; a CA's also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certs,
        crl_sign=signs_certs,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(common_name: str) -> CertKey:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(_cert_pem(cert), _key_pem(key))


def issue(
    ca: CertKey,
    common_name: str,
    *,
    server: bool,
    client: bool,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    org: str | None = None,
) -> CertKey:
    """A leaf certificate signed by `ca` with the given SANs and extended key usages."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [
        u
        for u, on in (
            (ExtendedKeyUsageOID.SERVER_AUTH, server),
            (ExtendedKeyUsageOID.CLIENT_AUTH, client),
        )
        if on
    ]
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certs=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(_cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def member_sans(node: NodeInfo) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) an etcd member's certificate must carry."""
    ips = ["127.0.0.1"] + ([node.ip] if node.ip else [])
    return [node.name, "localhost"], ips


def cert_matches(ck: CertKey, ca: CertKey, dns: Sequence[str], ips: Sequence[str]) -> bool:
    """True if `ck` is signed by `ca` and carries exactly these SANs.

    Not its expiry: a running node holds the same certificate, so a copy reissued here
    would differ from what the node serves. `status` warns of expiry, and `renew`
    reissues and rolls the certificates out together."""
    cert = x509.load_pem_x509_certificate(ck.cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not dns and not ips
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return have_dns == set(dns) and have_ips == set(ips)


def ca_cert_hash(ca_cert_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def new_bootstrap_token() -> str:
    alphabet = string.ascii_lowercase + string.digits

    def pick(n: int) -> str:
        return "".join(secrets.choice(alphabet) for _ in range(n))

    return f"{pick(6)}.{pick(16)}"


def new_ssh_host_key() -> SSHHostKey:
    """An ed25519 key pair in OpenSSH formats: a node's host key, or the operator's login key."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return SSHHostKey("ed25519", private, public)


def new_service_account_keys() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return _key_pem(key), public


def admin_kubeconfig(pki: ClusterPKI, cluster: str, api_endpoint: str) -> str:
    """A kubeconfig for the operator: a fresh client cert in kubeadm's cluster-admins group."""
    admin = issue(
        pki.kube_ca, "stackfleet-admin", server=False, client=True, org="kubeadm:cluster-admins"
    )

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    user = f"{cluster}-admin"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": f"https://{api_endpoint}",
                    "certificate-authority-data": b64(pki.kube_ca.cert_pem),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(admin.cert_pem),
                    "client-key-data": b64(admin.key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    return yaml.safe_dump(doc, sort_keys=False)


# ---- storage ------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (temp file in the same dir + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Store:
    """Read/write PEM pairs and text files in one 0700 directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        for stale in directory.glob(".*.tmp"):  # left by a kill between write and rename
            stale.unlink(missing_ok=True)

    def text(self, name: str) -> str | None:
        path = self.dir / name
        return path.read_text() if path.exists() else None

    def put(self, name: str, text: str) -> None:
        write_private(self.dir / name, text)

    def pair(self, stem: str) -> CertKey | None:
        cert, key = self.text(f"{stem}.crt"), self.text(f"{stem}.key")
        return CertKey(cert, key) if cert and key else None

    def put_pair(self, stem: str, ck: CertKey) -> None:
        # Key first: a crash in between leaves no cert, so the pair is reissued next run.
        self.put(f"{stem}.key", ck.key_pem)
        self.put(f"{stem}.crt", ck.cert_pem)


def _ca(store: _Store, stem: str, common_name: str) -> CertKey:
    existing = store.pair(stem)
    if existing is not None:
        return existing  # never rotated by a re-run
    ca = new_ca(common_name)
    store.put_pair(stem, ca)
    return ca


def _leaf(
    store: _Store,
    stem: str,
    ca: CertKey,
    cn: str,
    dns: list[str],
    ips: list[str],
    *,
    server: bool,
    client: bool,
) -> CertKey:
    existing = store.pair(stem)
    if existing is not None and cert_matches(existing, ca, dns, ips):
        return existing
    ck = issue(ca, cn, dns=dns, ips=ips, server=server, client=client)
    store.put_pair(stem, ck)
    return ck


def load_or_create(directory: Path, cluster: str, nodes: Sequence[NodeInfo]) -> ClusterPKI:
    """Load the cluster's PKI from `directory`, creating what is missing and reissuing only
    a certificate whose CA or names no longer fit (never for its age: see cert_matches)."""
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise BadInput(f"nodes: duplicate node names in cluster {cluster!r}")
    store = _Store(directory)
    etcd_ca = _ca(store, "etcd-ca", f"{cluster}-etcd-ca")
    kube_ca = _ca(store, "kube-ca", f"{cluster}-kubernetes-ca")
    front_proxy_ca = _ca(store, "front-proxy-ca", f"{cluster}-front-proxy-ca")

    sa_key, sa_pub = store.text("sa.key"), store.text("sa.pub")
    if not (sa_key and sa_pub):
        sa_key, sa_pub = new_service_account_keys()
        store.put("sa.key", sa_key)
        store.put("sa.pub", sa_pub)

    token = store.text("bootstrap-token")
    token = token.strip() if token else ""
    if not token:
        token = new_bootstrap_token()
        store.put("bootstrap-token", token + "\n")

    pki = ClusterPKI(
        cluster=cluster,
        etcd_ca=etcd_ca,
        kube_ca=kube_ca,
        front_proxy_ca=front_proxy_ca,
        service_account_private_pem=sa_key,
        service_account_public_pem=sa_pub,
        bootstrap_token=token,
    )
    for node in nodes:
        if role(node.role).etcd_member:
            dns, ips = member_sans(node)
            # One cert for both the client and the peer listener: both EKUs.
            pki.etcd_members[node.name] = _leaf(
                store,
                f"etcd-member-{node.name}",
                etcd_ca,
                node.name,
                dns,
                ips,
                server=True,
                client=True,
            )
        private, public = (
            store.text(f"ssh-host-{node.name}.key"),
            store.text(f"ssh-host-{node.name}.pub"),
        )
        if private and public:
            pki.ssh_host_keys[node.name] = SSHHostKey("ed25519", private, public.strip())
        else:
            hk = new_ssh_host_key()
            store.put(f"ssh-host-{node.name}.key", hk.private_openssh)
            store.put(f"ssh-host-{node.name}.pub", hk.public_openssh + "\n")
            pki.ssh_host_keys[node.name] = hk
    for client in ETCD_CLIENTS:
        pki.etcd_clients[client] = _leaf(
            store,
            f"etcd-client-{client}",
            etcd_ca,
            f"{cluster}-etcd-{client}",
            [],
            [],
            server=False,
            client=True,
        )
    return pki


# ---- renewal ------------------------------------------------------------------------------


def leaf_ca_stem(stem: str) -> str:
    """The CA (its file stem) that signs the leaf `stem`: every leaf here is etcd's."""
    if stem.startswith(("etcd-member-", "etcd-client-")):
        return "etcd-ca"
    raise BadInput(f"{stem}: not a certificate `stackfleet renew` reissues")


def reissue(directory: Path, stem: str) -> CertKey:
    """A new key and certificate for the leaf `stem`, from the same CA, with the same
    subject, SANs and usages, valid LEAF_DAYS from now. Nothing is written: the caller
    stores it (put_leaf) once the node has it, so a failed rollout leaves the old pair,
    still valid, where it was."""
    store = _Store(directory)
    old, ca = store.pair(stem), store.pair(leaf_ca_stem(stem))
    if old is None or ca is None:
        raise BadInput(f"{directory}: no {stem}.crt/.key or its CA: nothing to reissue")
    cert = x509.load_pem_x509_certificate(old.cert_pem.encode())
    names = cert.subject
    cn = names.get_attributes_for_oid(NameOID.COMMON_NAME)
    org = names.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    return issue(
        ca,
        str(cn[0].value) if cn else stem,
        server=ExtendedKeyUsageOID.SERVER_AUTH in eku,
        client=ExtendedKeyUsageOID.CLIENT_AUTH in eku,
        dns=dns,
        ips=ips,
        org=str(org[0].value) if org else None,
    )


def put_leaf(directory: Path, stem: str, ck: CertKey) -> None:
    """Store a reissued pair (0600, atomically, key first)."""
    _Store(directory).put_pair(stem, ck)
