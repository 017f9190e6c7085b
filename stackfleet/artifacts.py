"""Pinned downloads (binaries and archives) that node userdata fetches and checks by sha256.

Every checksum below is copied from a public source, never computed or invented here:
- kubelet, kubeadm, kubectl, etcd, CNI plugins, crictl: kubernetes-sigs/kubespray,
  roles/kubespray_defaults/vars/main/checksums.yml (amd64) at commit 46dbdd3994b3 (1.34-1.36,
  etcd, CNI, crictl 1.33+) and at 1fb14b7463d0 (1.31-1.33, crictl 1.31/1.32).
- flanneld v0.27.4 (the `flanneld-amd64` release asset): sysoperator/kubernetes-formula,
  pillar/flannel.sls at commit e2e88269b330.

A local mirror (`artifacts.base_url` in the spec) serves the same file names under one base
URL: `<base_url>/<file name>`; the checksums stay the same, so a tampered mirror is refused
on the node.

A spec may also pin any artifact itself (`artifacts.<name>`: a file under base_url or an
absolute URL, its version and sha256), for patched releases and private builds; see
`ArtifactPin` and `default_artifacts`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from stackfleet.errors import BadInput

ETCD_VERSION = "3.6.14"
FLANNEL_VERSION = "0.27.4"
CNI_PLUGINS_VERSION = "1.8.0"
ARCH = "amd64"


@dataclass(frozen=True)
class Artifact:
    """One file to download; `name` is the file name on the mirror and in the node's cache."""

    name: str
    url: str
    sha256: str
    version: str


@dataclass(frozen=True)
class ArtifactSet:
    """Everything a node may fetch. Control-plane images come from `image_repository`."""

    etcd: Artifact  # tar.gz with etcd, etcdctl, etcdutl
    flannel: Artifact  # the flanneld binary
    cni_plugins: Artifact  # tgz with bridge, host-local, portmap, loopback, ...
    kubelet: Artifact
    kubeadm: Artifact
    kubectl: Artifact
    crictl: Artifact  # kubeadm's preflight needs crictl
    kubernetes_version: str
    # kubeadm pulls kube-apiserver & co. by its own pinned tags from here (a registry mirror
    # works the same way: set imageRepository).
    image_repository: str = "registry.k8s.io"

    @property
    def etcd_version(self) -> str:
        return self.etcd.version

    @property
    def flannel_version(self) -> str:
        return self.flannel.version


# The one table of artifact names: the Artifact fields of ArtifactSet. The spec's
# `artifacts.<name>` pins and its schema follow it; docs/bootstrap.md lists it for people
# (a test keeps that list in step).
ARTIFACT_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(ArtifactSet) if f.type in ("Artifact", Artifact)
)
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


@dataclass(frozen=True)
class ArtifactPin:
    """A spec's own choice for one artifact: exactly one of `file` (under base_url) or `url`."""

    name: str  # one of ARTIFACT_NAMES
    version: str
    sha256: str
    file: str | None = None
    url: str | None = None


# kubernetes version -> (kubelet, kubeadm, kubectl, crictl version, crictl sha256), amd64.
_KUBERNETES: dict[str, tuple[str, str, str, str, str]] = {
    "1.31.4": (
        "9062fbb2b6054ecab07b9e841b0a49ab4acc224860b01c218d01ba95017c5e49",
        "6c8e2fd2fa2cab51debf215fcb9149b94e7046f69ff558290066875200975cf6",
        "298e19e9c6c17199011404278f0ff8168a7eca4217edad9097af577023a5620f",
        "1.31.1",
        "0a03ba6b1e4c253d63627f8d210b2ea07675a8712587e697657b236d06d7d231",
    ),
    "1.32.9": (
        "fd7711d1f0c1e263e9332004858fc4a6c39462e3e2ee485706eea5297966ed9c",
        "183b3b12e39b3ed2dc2db25cbc17769610cdd5f02e9d1325ba747d54978d8f5f",
        "509ae171bac7ad3b98cc49f5594d6bc84900cf6860f155968d1059fde3be5286",
        "1.32.0",
        "f050b71d3a73a91a4e0990b90143ed04dcd100cc66f953736fcb6a2730e283c4",
    ),
    "1.33.5": (
        "8f6106b970259486c5af5cbee404d4f23406d96d99dfb92a6965b299c2a4db0e",
        "6761219749c6c67a56a5668dfe65d669e0c1f34d4b280b72de6d74d47c601f1e",
        "6a12d6c39e4a611a3687ee24d8c733961bb4bae1ae975f5204400c0a6930c6fc",
        "1.33.0",
        "8307399e714626e69d1213a4cd18c8dec3d0201ecdac009b1802115df8973f0f",
    ),
    "1.34.11": (
        "4777a226b2ba3c1d656254bcf3f7ad471bf210042f361094216e51ab4fa9b4b6",
        "bd3cbe40aff6c7b3b939243ebd80dbd7da207c0e594cfdd434295bf553ea7351",
        "8efbb9435132a190920eb65a47a8c1ecf755ad85ab57a600c9bedbab460bb7a8",
        "1.34.0",
        "a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51",
    ),
    "1.35.8": (
        "6971b9f95e54dbed67a2271abe6e78f8cc2894494649f3cf39e4b25a82dca923",
        "1bbc64a2be5b300880ae9330c6bba592ec2a2b8ecb79c527b0c7cc0f44070e5e",
        "874d5e72dbb819f43cff16bcd1e4f8bac5b7f2361fe1e55049b0a6c676fb0cbf",
        "1.35.0",
        "2e141e5b22cb189c40365a11807d69b76b9b3caced89fac2f4ec879408ce2177",
    ),
    "1.36.4": (
        "cf2562db46c48ab84cc3791540778ee7fb1a0a008529adbb434723dd02ed8b4b",
        "10d054585907f2c8bb823c84f6a66b3bd2a474c3d795475f04e9a44f78650fe6",
        "8b8f088da2dab964f853b38464033b1be15ede2839eca751482357c45abdd05a",
        "1.36.0",
        "83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3",
    ),
}

_ETCD_SHA256 = "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5"
_FLANNEL_SHA256 = "fc1233aac3ad2707d14c9ae42016b5402753f755f0d07cc5c41dc4190e95d299"
_CNI_SHA256 = "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6"

SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = tuple(_KUBERNETES)


def _artifact(
    name: str, upstream_dir: str, sha256: str, base_url: str | None, version: str
) -> Artifact:
    # A mirror is flat: every file sits directly under base_url, under its upstream name.
    root = base_url.rstrip("/") if base_url else upstream_dir
    return Artifact(name=name, url=f"{root}/{name}", sha256=sha256, version=version)


def _pinned(pin: ArtifactPin, base_url: str | None) -> Artifact:
    where = f"artifacts.{pin.name}"
    if (pin.file is None) == (pin.url is None):
        raise BadInput(f"{where}: give exactly one of file or url")
    if pin.file is not None:
        if not base_url:
            raise BadInput(f"{where}.file: needs artifacts.base_url (or give an absolute url)")
        return _artifact(pin.file, "", pin.sha256.lower(), base_url, pin.version)
    url = str(pin.url)
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise BadInput(f"{where}.url: {url!r} is not an http(s) URL")
    # The cache name on the node: the URL's last path segment when it is a plain file name.
    last = urlsplit(url).path.rsplit("/", 1)[-1]
    name = last if re.fullmatch(FILE_NAME_PATTERN, last) else f"{pin.name}-{pin.version}"
    return Artifact(name=name, url=url, sha256=pin.sha256.lower(), version=pin.version)


def default_artifacts(
    kubernetes_version: str, base_url: str | None = None, pins: Sequence[ArtifactPin] = ()
) -> ArtifactSet:
    """The pinned artifact set for `kubernetes_version` (e.g. "1.31.4"), optionally mirrored.

    `pins` (the spec's `artifacts.<name>` entries) replace the built-in choice per artifact.
    """
    version = kubernetes_version.removeprefix("v")
    if version not in _KUBERNETES:
        supported = ", ".join(SUPPORTED_KUBERNETES_VERSIONS)
        raise BadInput(
            f"kubernetes.version: {kubernetes_version!r} has no pinned checksums; "
            f"supported: {supported}"
        )
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise BadInput(f"artifacts.base_url: {base_url!r} is not an http(s) URL")
    kubelet, kubeadm, kubectl, crictl_version, crictl_sha = _KUBERNETES[version]
    k8s_dir = f"https://dl.k8s.io/release/v{version}/bin/linux/{ARCH}"
    gh = "https://github.com"
    chosen = ArtifactSet(
        etcd=_artifact(
            f"etcd-v{ETCD_VERSION}-linux-{ARCH}.tar.gz",
            f"{gh}/etcd-io/etcd/releases/download/v{ETCD_VERSION}",
            _ETCD_SHA256,
            base_url,
            ETCD_VERSION,
        ),
        flannel=_artifact(
            f"flanneld-{ARCH}",
            f"{gh}/flannel-io/flannel/releases/download/v{FLANNEL_VERSION}",
            _FLANNEL_SHA256,
            base_url,
            FLANNEL_VERSION,
        ),
        cni_plugins=_artifact(
            f"cni-plugins-linux-{ARCH}-v{CNI_PLUGINS_VERSION}.tgz",
            f"{gh}/containernetworking/plugins/releases/download/v{CNI_PLUGINS_VERSION}",
            _CNI_SHA256,
            base_url,
            CNI_PLUGINS_VERSION,
        ),
        # kubelet/kubeadm/kubectl share one upstream file name across versions, so a mirror
        # serves one Kubernetes version per base_url.
        kubelet=_artifact("kubelet", k8s_dir, kubelet, base_url, version),
        kubeadm=_artifact("kubeadm", k8s_dir, kubeadm, base_url, version),
        kubectl=_artifact("kubectl", k8s_dir, kubectl, base_url, version),
        crictl=_artifact(
            f"crictl-v{crictl_version}-linux-{ARCH}.tar.gz",
            f"{gh}/kubernetes-sigs/cri-tools/releases/download/v{crictl_version}",
            crictl_sha,
            base_url,
            crictl_version,
        ),
        kubernetes_version=version,
    )
    pinned: dict[str, Any] = {}
    for pin in pins:
        if pin.name not in ARTIFACT_NAMES:
            raise BadInput(
                f"artifacts.{pin.name}: unknown artifact; known: {', '.join(ARTIFACT_NAMES)}"
            )
        pinned[pin.name] = _pinned(pin, base_url)
    return replace(chosen, **pinned)
