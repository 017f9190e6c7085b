"""The operator's admin kubeconfig: its client certificate, kept and reused, and its merge
into an existing kubeconfig as `kubectl config` does.

The admin certificate is kept in the cluster's state dir (admin.kubeconfig, 0600) and
reused by every call until it nears expiry, so `stackfleet kubeconfig` in a loop or in
every CI job does not mint a certificate each time (none of them can be revoked).
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from stackfleet.errors import BadInput
from stackfleet.pki import RENEW_BEFORE, CertKey, issue

ADMIN_NAME = "stackfleet-admin"
ADMIN_GROUP = "kubeadm:cluster-admins"  # kubeadm binds it to cluster-admin
SECTIONS = ("clusters", "users", "contexts")


def user_name(cluster: str) -> str:
    return f"{cluster}-admin"


def document(cluster: str, server: str, ca_cert_pem: str, admin: CertKey) -> dict[str, Any]:
    """A kubeconfig whose cluster and context are named after the cluster, its user
    `<cluster>-admin`, all data embedded."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert_pem)},
            }
        ],
        "users": [
            {
                "name": user_name(cluster),
                "user": {
                    "client-certificate-data": _b64(admin.cert_pem),
                    "client-key-data": _b64(admin.key_pem),
                },
            }
        ],
        "contexts": [
            {"name": cluster, "context": {"cluster": cluster, "user": user_name(cluster)}}
        ],
        "current-context": cluster,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def admin_credentials(
    kube_ca: CertKey, kept: Path, now: dt.datetime | None = None
) -> tuple[CertKey, bool]:
    """(the admin client certificate, whether it was reused): the one in the kubeconfig
    at `kept` while it is still good for this CA, else a new one."""
    old = _kept_admin(kept)
    if old is not None and still_good(old, kube_ca, now or dt.datetime.now(dt.UTC)):
        return old, True
    return issue(kube_ca, ADMIN_NAME, server=False, client=True, org=ADMIN_GROUP), False


def _kept_admin(path: Path) -> CertKey | None:
    if not path.is_file():
        return None
    try:
        user = yaml.safe_load(path.read_text())["users"][0]["user"]
        return CertKey(
            base64.b64decode(user["client-certificate-data"]).decode(),
            base64.b64decode(user["client-key-data"]).decode(),
        )
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        return None  # edited by hand or damaged: a new one is made


def still_good(admin: CertKey, kube_ca: CertKey, now: dt.datetime) -> bool:
    """Signed by this CA, for the admin group, its key matching, and more than a third
    of its life (and more than RENEW_BEFORE) left."""
    try:
        cert = x509.load_pem_x509_certificate(admin.cert_pem.encode())
        ca = x509.load_pem_x509_certificate(kube_ca.cert_pem.encode())
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(admin.key_pem.encode(), password=None)
    except (ValueError, TypeError, InvalidSignature):
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return False
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if orgs != [ADMIN_GROUP]:
        return False
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now > max(RENEW_BEFORE, life / 3)


def not_after(admin: CertKey) -> dt.datetime:
    return x509.load_pem_x509_certificate(admin.cert_pem.encode()).not_valid_after_utc


def merge_target(kubeconfig_env: str | None, home: Path) -> Path:
    """Where `kubectl config` writes: the first file of $KUBECONFIG, else ~/.kube/config."""
    import os

    paths = [p for p in (kubeconfig_env or "").split(os.pathsep) if p]
    return Path(paths[0]).expanduser() if paths else home / ".kube" / "config"


def merged(existing: dict[str, Any] | None, ours: dict[str, Any]) -> dict[str, Any]:
    """`existing` with our cluster, user and context added (an entry of the same name is
    replaced in place) and current-context set to ours; everything else kept."""
    out: dict[str, Any] = dict(existing or {})
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out.setdefault("preferences", {})
    for section in SECTIONS:
        entries = list(out.get(section) or [])
        for entry in ours[section]:
            at = next((i for i, e in enumerate(entries) if e.get("name") == entry["name"]), None)
            if at is None:
                entries.append(entry)
            else:
                entries[at] = entry
        out[section] = entries
    out["current-context"] = ours["current-context"]
    return out


def read_kubeconfig(path: Path) -> dict[str, Any] | None:
    """The kubeconfig at `path` (None: no such file, or empty); BadInput if it is not one."""
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not a kubeconfig (YAML error: {exc}); fix or move it") from None
    if doc is None:
        return None
    bad = not isinstance(doc, dict) or any(
        not isinstance(doc.get(s) or [], list)
        or not all(isinstance(e, dict) for e in doc.get(s) or [])
        for s in SECTIONS
    )
    if bad:
        raise BadInput(
            f"{path}: not a kubeconfig (clusters, users and contexts must be lists of "
            "entries, e.g. `clusters: [{name: demo, cluster: {server: https://10.0.0.5:6443}}]`)"
        )
    return doc


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
