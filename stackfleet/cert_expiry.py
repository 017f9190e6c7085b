"""When each certificate of a cluster expires, read from the local PKI.

The cloud knows nothing of certificates: they live in $STACKFLEET_HOME/clusters/<name>
(pki/*.crt, and the client certificate inside admin.kubeconfig). `status` shows them and
warns about those inside WARN_DAYS; `renew` picks the node certificates to reissue.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from stackfleet import state
from stackfleet.roles import CONTROL, ETCD, kube_roles

WARN_DAYS = 30
# CA file stem -> what to call it. CAs are not reissued by `renew` (a new CA is a new
# cluster): they are made for ten years.
CAS = {"etcd-ca": "etcd CA", "kube-ca": "Kubernetes CA", "front-proxy-ca": "front-proxy CA"}
# Shared etcd client certificate stem -> (what to call it, the roles whose nodes hold it;
# none: it stays on the operator's machine).
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "etcd-client-apiserver": ("apiserver's etcd client certificate", (CONTROL,)),
    "etcd-client-flannel": ("flannel's etcd client certificate", kube_roles()),
    "etcd-client-operator": ("operator's etcd client certificate", ()),
}
# What no command renews yet, and what to do instead.
NOT_RENEWABLE = {
    **{stem: "CA rotation is not supported yet: plan a new cluster (`down`, `up`)" for stem in CAS},
    "etcd-client-apiserver": (
        "`stackfleet renew` does not roll it out yet (kube-apiserver reads it only at start): "
        "plan a new cluster before then"
    ),
}
MEMBER_PREFIX = "etcd-member-"
MEMBER_WHAT = "etcd server+peer certificate"


@dataclass(frozen=True)
class CertExpiry:
    stem: str  # the file stem in pki/ ("admin" for the kubeconfig's certificate)
    what: str  # e.g. "etcd server+peer certificate"
    node: str | None  # the one node holding it (etcd members), else None
    roles: tuple[str, ...]  # roles whose nodes hold it (shared client certificates)
    not_after: dt.datetime
    serial: int

    @property
    def renew_with(self) -> str:
        """The command that renews it ("": none does yet, see NOT_RENEWABLE)."""
        if self.stem in NOT_RENEWABLE:
            return ""
        if self.stem == "admin":
            return "stackfleet kubeconfig"
        return "stackfleet renew"

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def label(self) -> str:
        if self.node:
            return f"{self.node}'s {self.what}"
        return f"the {self.what}"


def pki_dir(cluster: str) -> Path:
    return state.home() / "clusters" / cluster / "pki"


def _load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _admin_cert(cluster_dir: Path) -> x509.Certificate | None:
    path = cluster_dir / "admin.kubeconfig"
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text())
        data = doc["users"][0]["user"]["client-certificate-data"]
        return _load(base64.b64decode(data).decode())
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        return None  # a kubeconfig edited by hand: not ours to judge


def read(cluster: str) -> list[CertExpiry] | None:
    """Every certificate in the cluster's local PKI; None when this machine holds none."""
    pki = pki_dir(cluster)
    if not pki.is_dir():
        return None
    out: list[CertExpiry] = []

    def add(stem: str, what: str, node: str | None, roles: tuple[str, ...]) -> None:
        path = pki / f"{stem}.crt"
        if path.is_file():
            cert = _load(path.read_text())
            out.append(
                CertExpiry(stem, what, node, roles, cert.not_valid_after_utc, cert.serial_number)
            )

    for stem, what in CAS.items():
        add(stem, what, None, ())
    members = sorted(p.name[: -len(".crt")] for p in pki.glob(f"{MEMBER_PREFIX}*.crt"))
    for stem in members:
        add(stem, MEMBER_WHAT, stem[len(MEMBER_PREFIX) :], (ETCD,))
    for stem, (what, roles) in CLIENTS.items():
        add(stem, what, None, roles)
    admin = _admin_cert(pki.parent)
    if admin is not None:
        out.append(
            CertExpiry(
                "admin",
                "admin client certificate (admin.kubeconfig)",
                None,
                (),
                admin.not_valid_after_utc,
                admin.serial_number,
            )
        )
    return out


def warnings(
    certs: list[CertExpiry], now: dt.datetime | None = None, within_days: int = WARN_DAYS
) -> list[str]:
    """One line per certificate that expires inside `within_days` (or has expired)."""
    now = now or dt.datetime.now(dt.UTC)
    lines = []
    for c in certs:
        days = c.days_left(now)
        if days >= within_days:
            continue
        date = c.not_after.date().isoformat()
        when = f"expires in {days} days ({date})" if days >= 0 else f"expired on {date}"
        how = f"run `{c.renew_with}`" if c.renew_with else NOT_RENEWABLE[c.stem]
        lines.append(f"warning: {c.label()} {when}: {how}")
    return lines


def as_json(cluster: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """`status`'s "certificates" entry (docs/output.md)."""
    now = now or dt.datetime.now(dt.UTC)
    certs = read(cluster)
    if certs is None:
        return {"pki": str(pki_dir(cluster)), "present": False, "items": [], "warnings": []}
    return {
        "pki": str(pki_dir(cluster)),
        "present": True,
        "items": [
            {
                "name": c.stem,
                "what": c.what,
                "node": c.node,
                "roles": list(c.roles),
                "not_after": c.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "days_left": c.days_left(now),
                "serial": format(c.serial, "x"),
                "renew_with": c.renew_with or None,
            }
            for c in certs
        ],
        "warnings": warnings(certs, now),
    }
