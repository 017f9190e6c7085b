"""What each role puts on a node: files and units, as data. Flavors serialise these later."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

from stackfleet.artifacts import Artifact
from stackfleet.cloudconfig_templates.model import NodeInfo, RenderInput
from stackfleet.cloudconfig_templates.templates import render
from stackfleet.errors import BadInput
from stackfleet.flavors import flavor
from stackfleet.roles import ETCD, ETCD_CLIENT, ETCD_METRICS_LOOPBACK, ETCD_PEER, KUBE_API, role

CNI_BIN_DIR = "/opt/cni/bin"
SCRIPT_DIR = "/opt/stackfleet/bin"
MANIFEST = "/etc/stackfleet/artifacts.list"
ETCD_PKI = "/etc/etcd/pki"
ETCD_ENV = "/etc/etcd/etcd.env"
NODE_PKI = "/etc/stackfleet/pki"
FLANNEL_ENV = "/etc/flannel/options.env"
KUBEADM_CONFIG = "/etc/kubernetes/kubeadm.yaml"
FLANNEL_KEY = "/coreos.com/network/config"
ETCD_CLIENT_PORT = ETCD_CLIENT.number
ETCD_PEER_PORT = ETCD_PEER.number


@dataclass(frozen=True)
class File:
    path: str
    content: str
    permissions: str = "0644"


@dataclass(frozen=True)
class Unit:
    name: str
    content: str


@dataclass
class Parts:
    files: list[File] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)

    def add(self, other: Parts) -> Parts:
        self.files += other.files
        self.units += other.units
        self.packages += [p for p in other.packages if p not in self.packages]
        return self


# ---- derived values (computed here, never inside a template) -----------------------------


def etcd_members(inp: RenderInput) -> tuple[NodeInfo, ...]:
    members = inp.by_role(ETCD)
    if not members:
        raise BadInput(f"nodes: cluster {inp.cluster!r} has no etcd member")
    missing = [m.name for m in members if not m.ip]
    if missing:
        raise BadInput(f"nodes: etcd IPs not known yet for {', '.join(missing)}")
    return members


def client_endpoints(inp: RenderInput) -> str:
    return ",".join(f"https://{m.ip}:{ETCD_CLIENT_PORT}" for m in etcd_members(inp))


def initial_cluster(inp: RenderInput) -> str:
    return ",".join(f"{m.name}=https://{m.ip}:{ETCD_PEER_PORT}" for m in etcd_members(inp))


def bin_dir(inp: RenderInput) -> str:
    """Where this flavor's nodes keep downloaded binaries."""
    return flavor(inp.flavor).bin_dir


def _unit(
    name: str, template: str, after: list[str], requires: list[str], bin_dir: str, **kw: object
) -> Unit:
    content = render(
        f"units/{template}.service.j2",
        after=after,
        requires=requires,
        bin_dir=bin_dir,
        script_dir=SCRIPT_DIR,
        **kw,
    )
    return Unit(name, content)


def _script(name: str, template: str, **kw: object) -> File:
    return File(f"{SCRIPT_DIR}/{name}", render(f"scripts/{template}.sh.j2", **kw), "0755")


def _env(path: str, env: dict[str, str], permissions: str = "0644") -> File:
    return File(path, render("config/env.j2", env=env), permissions)


# ---- building blocks shared by roles -----------------------------------------------------


def artifacts(entries: list[tuple[Artifact, str, str, str]], bin_dir: str) -> Parts:
    """(artifact, kind, destination, names) -> manifest + fetch script + unit.

    `names` is, for `bin`, the installed file name; for `tar`, the members to extract (tar
    wildcards, never expanded by the shell).
    """
    lines = [
        f"{a.sha256} {a.url} {a.name} {kind} {dest} {members}".rstrip()
        for a, kind, dest, members in entries
    ]
    return Parts(
        files=[
            File(MANIFEST, "\n".join(lines) + "\n"),
            _script("fetch-artifacts", "fetch-artifacts"),
        ],
        units=[
            _unit(
                "stackfleet-artifacts.service",
                "stackfleet-artifacts",
                ["network-online.target"],
                [],
                bin_dir,
                manifest=MANIFEST,
            ),
        ],
    )


def etcd_member(inp: RenderInput, node: NodeInfo) -> Parts:
    members = etcd_members(inp)
    if node.name not in inp.pki.etcd_members:
        raise BadInput(f"nodes: no etcd certificate issued for {node.name!r}")
    cert = inp.pki.etcd_members[node.name]
    env = {
        "ETCD_NAME": node.name,
        "ETCD_DATA_DIR": "/var/lib/etcd",
        "ETCD_LISTEN_CLIENT_URLS": f"https://{node.ip}:{ETCD_CLIENT_PORT},https://127.0.0.1:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"https://{node.ip}:{ETCD_CLIENT_PORT}",
        "ETCD_LISTEN_PEER_URLS": f"https://{node.ip}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{node.ip}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_CLUSTER": initial_cluster(inp),
        "ETCD_INITIAL_CLUSTER_TOKEN": f"{inp.cluster}-etcd",
        # Ignored once the data dir exists, so a re-boot keeps the formed cluster; a member
        # joining a formed cluster (after `member add`) says "existing".
        "ETCD_INITIAL_CLUSTER_STATE": inp.etcd_initial_state,
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_TRUSTED_CA_FILE": f"{ETCD_PKI}/ca.crt",
        "ETCD_CERT_FILE": f"{ETCD_PKI}/member.crt",
        "ETCD_KEY_FILE": f"{ETCD_PKI}/member.key",
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_TRUSTED_CA_FILE": f"{ETCD_PKI}/ca.crt",
        "ETCD_PEER_CERT_FILE": f"{ETCD_PKI}/member.crt",
        "ETCD_PEER_KEY_FILE": f"{ETCD_PKI}/member.key",
        # Plain-HTTP /health and /metrics on loopback only, for local probes.
        "ETCD_LISTEN_METRICS_URLS": f"http://127.0.0.1:{ETCD_METRICS_LOOPBACK.number}",
        **inp.etcd_timing.env(),
    }
    bins = bin_dir(inp)
    parts = artifacts([(inp.artifacts.etcd, "tar", bins, "*/etcd */etcdctl */etcdutl")], bins)
    parts.add(
        Parts(
            files=[
                File(f"{ETCD_PKI}/ca.crt", inp.pki.etcd_ca.cert_pem),
                File(f"{ETCD_PKI}/member.crt", cert.cert_pem),
                File(f"{ETCD_PKI}/member.key", cert.key_pem, "0600"),
                _env(ETCD_ENV, env),
            ],
            units=[
                _unit(
                    "stackfleet-etcd.service",
                    "stackfleet-etcd",
                    ["stackfleet-artifacts.service", "network-online.target"],
                    ["stackfleet-artifacts.service"],
                    bins,
                    env_file=ETCD_ENV,
                    etcd_version=inp.artifacts.etcd_version,
                ),
            ],
        )
    )
    if node.name == members[0].name:
        parts.add(flannel_network(inp))
    return parts


def flannel_network(inp: RenderInput) -> Parts:
    """On the first etcd member: put flannel's network config into etcd, once."""
    config = json.dumps(
        {"Network": inp.pod_cidr, "SubnetLen": 24, "Backend": {"Type": inp.flannel_backend}},
        separators=(",", ":"),
    )
    return Parts(
        files=[
            _script(
                "flannel-network",
                "flannel-network",
                endpoint=f"https://127.0.0.1:{ETCD_CLIENT_PORT}",
                ca_file=f"{ETCD_PKI}/ca.crt",
                cert_file=f"{ETCD_PKI}/member.crt",
                key_file=f"{ETCD_PKI}/member.key",
                bin_dir=bin_dir(inp),
                key=FLANNEL_KEY,
                network_config=config,
            ),
        ],
        units=[
            _unit(
                "stackfleet-flannel-network.service",
                "stackfleet-flannel-network",
                ["stackfleet-etcd.service"],
                ["stackfleet-etcd.service"],
                bin_dir(inp),
            ),
        ],
    )


def kube_node(inp: RenderInput, node: NodeInfo) -> Parts:
    """What control and worker nodes share: binaries, flannel, CNI, kubelet, kernel setup."""
    if not inp.api_endpoint:
        raise BadInput(f"nodes: API endpoint not known yet; cannot render {node.name!r}")
    a = inp.artifacts
    bins = bin_dir(inp)
    parts = artifacts(
        [
            (a.kubelet, "bin", bins, "kubelet"),
            (a.kubeadm, "bin", bins, "kubeadm"),
            (a.kubectl, "bin", bins, "kubectl"),
            (a.crictl, "tar", bins, "crictl"),
            (a.flannel, "bin", bins, "flanneld"),
            (a.cni_plugins, "tar", CNI_BIN_DIR, "*/bridge */host-local */portmap */loopback"),
        ],
        bins,
    )
    flannel_cert = inp.pki.etcd_clients["flannel"]
    flannel_env = {
        "FLANNELD_ETCD_ENDPOINTS": client_endpoints(inp),
        "FLANNELD_ETCD_PREFIX": FLANNEL_KEY.rsplit("/", 1)[0],
        "FLANNELD_ETCD_CAFILE": f"{NODE_PKI}/etcd-ca.crt",
        "FLANNELD_ETCD_CERTFILE": f"{NODE_PKI}/flannel-etcd-client.crt",
        "FLANNELD_ETCD_KEYFILE": f"{NODE_PKI}/flannel-etcd-client.key",
        "FLANNELD_IP_MASQ": "true",
        "FLANNELD_SUBNET_FILE": "/run/flannel/subnet.env",
        "FLANNELD_PUBLIC_IP": str(node.ip),
    }
    base = ["stackfleet-artifacts.service"]
    parts.add(
        Parts(
            files=[
                File(f"{NODE_PKI}/etcd-ca.crt", inp.pki.etcd_ca.cert_pem),
                File(f"{NODE_PKI}/flannel-etcd-client.crt", flannel_cert.cert_pem),
                File(f"{NODE_PKI}/flannel-etcd-client.key", flannel_cert.key_pem, "0600"),
                _env(FLANNEL_ENV, flannel_env),
                _script("cni-config", "cni-config", conf_dir="/etc/cni/net.d", network_name="cbr0"),
                File("/etc/modules-load.d/stackfleet-k8s.conf", "overlay\nbr_netfilter\n"),
                File(
                    "/etc/sysctl.d/90-stackfleet-k8s.conf",
                    "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n",
                ),
            ],
            units=[
                _unit(
                    "stackfleet-flanneld.service",
                    "stackfleet-flanneld",
                    [*base, "network-online.target"],
                    base,
                    bins,
                    env_file=FLANNEL_ENV,
                    flannel_version=a.flannel_version,
                ),
                _unit(
                    "stackfleet-cni-config.service",
                    "stackfleet-cni-config",
                    ["stackfleet-flanneld.service"],
                    ["stackfleet-flanneld.service"],
                    bins,
                ),
                _unit(
                    "kubelet.service",
                    "kubelet",
                    [*base, "containerd.service"],
                    base,
                    bins,
                    kubernetes_version=a.kubernetes_version,
                ),
            ],
        )
    )
    return parts


def _v1beta4_args(args: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in args.items()]


def kubeadm(inp: RenderInput, node: NodeInfo, action: str) -> Parts:
    """init (the control plane): `kubeadm init` with external etcd and our CAs.
    join: `kubeadm join` with the bootstrap token, the CA pinned by its hash."""
    api = str(inp.api_endpoint)
    registration = {
        "name": node.name,
        "criSocket": "unix:///run/containerd/containerd.sock",
        "kubeletExtraArgs": _v1beta4_args({"node-ip": str(node.ip)}),
    }
    staged: list[tuple[str, str]] = []
    files: list[File] = []
    if action == "init":
        pki = inp.pki
        apiserver = pki.etcd_clients["apiserver"]
        # kubeadm signs the control-plane certs with these CA keys, and the controller-manager
        # signs kubelet client certs with the kube CA key; the etcd CA key never leaves.
        material = {
            "ca.crt": (pki.kube_ca.cert_pem, "0644"),
            "ca.key": (pki.kube_ca.key_pem, "0600"),
            "front-proxy-ca.crt": (pki.front_proxy_ca.cert_pem, "0644"),
            "front-proxy-ca.key": (pki.front_proxy_ca.key_pem, "0600"),
            "sa.key": (pki.service_account_private_pem, "0600"),
            "sa.pub": (pki.service_account_public_pem, "0644"),
            "apiserver-etcd-client.crt": (apiserver.cert_pem, "0644"),
            "apiserver-etcd-client.key": (apiserver.key_pem, "0600"),
        }
        for fname, (content, perm) in material.items():
            files.append(File(f"{NODE_PKI}/kube/{fname}", content, perm))
            staged.append((f"{NODE_PKI}/kube/{fname}", fname))
        host = api.rsplit(":", 1)[0]
        docs: list[dict[str, object]] = [
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "InitConfiguration",
                "bootstrapTokens": [
                    {
                        "token": pki.bootstrap_token,
                        "ttl": "24h0m0s",
                        "usages": ["signing", "authentication"],
                        "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                    }
                ],
                "localAPIEndpoint": {
                    "advertiseAddress": str(node.ip),
                    "bindPort": KUBE_API.number,
                },
                "nodeRegistration": registration,
            },
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "ClusterConfiguration",
                "clusterName": inp.cluster,
                "kubernetesVersion": f"v{inp.artifacts.kubernetes_version}",
                "imageRepository": inp.artifacts.image_repository,
                "controlPlaneEndpoint": api,
                "certificatesDir": "/etc/kubernetes/pki",
                "networking": {"podSubnet": inp.pod_cidr, "serviceSubnet": inp.service_cidr},
                "apiServer": {"certSANs": sorted({host, node.name})},
                "etcd": {
                    "external": {
                        "endpoints": client_endpoints(inp).split(","),
                        "caFile": f"{NODE_PKI}/etcd-ca.crt",
                        "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                        "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
                    }
                },
            },
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "cgroupDriver": "systemd",
            },
        ]
    else:
        docs = [
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "JoinConfiguration",
                "discovery": {
                    "bootstrapToken": {
                        "apiServerEndpoint": api,
                        "token": inp.join_token or inp.pki.bootstrap_token,
                        # Pin the CA we made: never --discovery-token-unsafe-skip-ca-verification.
                        "caCertHashes": [inp.pki.ca_cert_hash],
                    }
                },
                "nodeRegistration": registration,
            }
        ]
    files.append(File(KUBEADM_CONFIG, yaml.safe_dump_all(docs, sort_keys=False), "0600"))
    files.append(
        _script("stage-kube-pki", "stage-kube-pki", cert_dir="/etc/kubernetes/pki", files=staged)
    )
    deps = ["stackfleet-artifacts.service", "containerd.service", "kubelet.service"]
    return Parts(
        files=files,
        units=[
            _unit(
                "stackfleet-kubeadm.service",
                "stackfleet-kubeadm",
                deps,
                deps,
                bin_dir(inp),
                action=action,
                config=KUBEADM_CONFIG,
                kubernetes_version=inp.artifacts.kubernetes_version,
            )
        ],
    )


def hosts_file(node: NodeInfo) -> File:
    """localhost and the node's own name, nothing of its peers.

    A peer list written at deploy time goes stale (a node added later never reaches the
    nodes already running, and nodes deployed in one batch cannot list the next), and
    nothing here needs one: etcd's peers and endpoints, flannel's etcd endpoints and
    kubeadm's API endpoint are all IP addresses. So every node's /etc/hosts depends on
    that node alone, and `render --from-cloud` gives what was deployed (docs/bootstrap.md).
    """
    return File("/etc/hosts", render("config/hosts.j2", node=node))


def role_parts(inp: RenderInput, node: NodeInfo) -> Parts:
    """What the node's role (stackfleet/roles.py) says it runs."""
    kind = role(node.role)
    parts = Parts(files=[hosts_file(node)])
    if kind.etcd_member:
        parts.add(etcd_member(inp, node))
    if kind.kube_node:
        parts.add(kube_node(inp, node))
    if kind.kubeadm:
        parts.add(kubeadm(inp, node, kind.kubeadm))
    return parts
