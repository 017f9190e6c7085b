"""Scale-down drains and late-worker tokens, run as kubectl on the control node over SSH.

Real: OpenSSH's sshd in a network namespace this test makes, at the control node's
address, with a host key the client pins; paramiko on our side; the real kubectl client
(/usr/bin/kubectl, Google Cloud SDK's build, which picks the client matching the server's
/version) run through that SSH session, with the kubeconfig path and flags k8s_admin
gives it, over mutual TLS (certificates from stackfleet.pki).
Stand-in: kube-apiserver. None can run here (no kube-apiserver, kubelet or kubeadm
binary), so kubectl talks to kube_api_recorder, an HTTPS server on the namespace's
loopback that answers the few calls cordon, drain, delete and create make with minimal
valid JSON and records them; the tests assert on those calls. Simulated: the VMs (the
namespace shares this machine's filesystem, so kubectl and the kubeconfig are read from
where they are here instead of /opt/bin and /etc/kubernetes, without sudo).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import re
import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kube_api_recorder import FakeCluster, RecordingAPI
from sf_netns import SSHD, Node

from stackfleet.errors import StackfleetError
from stackfleet.pki import issue, new_ca, new_ssh_host_key, write_private
from stackfleet.provisioners import k8s_admin
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine
from stackfleet.provisioners.reach import _socket_in
from stackfleet.provisioners.ssh_client import connect
from stackfleet.spec import Spec, parse_spec

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
    pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed"),
]
CONTROL_IP = "10.77.0.10"
TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


def spec() -> Spec:
    return parse_spec(
        {
            "name": "kad",
            "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
            "os": "flatcar",
            "roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}},
            "access": {"ssh_cidrs": ["203.0.113.0/24"], "api_cidrs": ["203.0.113.0/24"]},
        }
    )


def machine(name: str, role: str, ip: str) -> Machine:
    return Machine(f"id-{name}", name, role, "Running", ip, tags={BOOTSTRAP_TAG: "done"})


@dataclass
class Control:
    """The control node: sshd in a namespace, the recording API on its loopback."""

    node: Node
    cluster: FakeCluster
    paths: k8s_admin.KubectlPaths
    machine: Machine
    key: Path
    host_public: str
    commands: list[str] = field(default_factory=list)

    def connect(self, m: Machine) -> Any:
        client = connect(m.private_ip or "", "root", self.key, self.host_public)
        original = client.exec_command

        def recorded(command: str, **kw: Any) -> Any:
            self.commands.append(command)  # every command line sent: no token may be in one
            return original(command, **kw)

        client.exec_command = recorded
        return client

    def mutations(self) -> list[tuple[str, str]]:
        return [(call.method, call.path) for call in self.cluster.calls if call.method != "GET"]


def _tls_files(tmp: Path) -> tuple[ssl.SSLContext, str]:
    """A server context (client certs required) and a kubeconfig body for a given server."""
    ca = new_ca("kad-test-kubernetes-ca")
    server = issue(ca, "kube-apiserver", server=True, client=False, ips=["127.0.0.1"])
    admin = issue(ca, "kubernetes-admin", server=False, client=True, org="kubeadm:cluster-admins")
    for name, text in {
        "ca.crt": ca.cert_pem,
        "s.crt": server.cert_pem,
        "s.key": server.key_pem,
    }.items():
        write_private(tmp / name, text)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp / "s.crt", tmp / "s.key")
    tls.load_verify_locations(tmp / "ca.crt")
    tls.verify_mode = ssl.CERT_REQUIRED

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    kubeconfig = (
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: kad\n  cluster:\n    server: https://127.0.0.1:{port}\n"
        f"    certificate-authority-data: {b64(ca.cert_pem)}\n"
        "users:\n- name: admin\n  user:\n"
        f"    client-certificate-data: {b64(admin.cert_pem)}\n"
        f"    client-key-data: {b64(admin.key_pem)}\n"
        "contexts:\n- name: kad\n  context: {{cluster: kad, user: admin}}\n"
        "current-context: kad\n"
    )
    return tls, kubeconfig


@pytest.fixture
def ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Control]:
    operator, host = new_ssh_host_key(), new_ssh_host_key()
    key, host_key, authorized = tmp_path / "id", tmp_path / "host_key", tmp_path / "authorized"
    write_private(key, operator.private_openssh)
    write_private(host_key, host.private_openssh)
    authorized.write_text(operator.public_openssh + "\n")
    tls, kubeconfig = _tls_files(tmp_path)
    node = Node(CONTROL_IP, host_key, authorized)
    api = None
    try:
        monkeypatch.setenv("STACKFLEET_NODE_NETNS", node.ns)  # its address exists only there
        sock = _socket_in(node.ns)  # the API listens on the namespace's loopback only
        sock.bind(("127.0.0.1", 0))
        cluster = FakeCluster()
        api = RecordingAPI(cluster, sock, tls)
        config = tmp_path / "admin.conf"
        write_private(config, kubeconfig.format(port=api.port))
        paths = k8s_admin.KubectlPaths(
            kubectl=KUBECTL,
            kubeconfig=str(config),
            sudo=False,
            cache_dir=str(tmp_path / "kube-cache"),
        )
        ctl = machine("kad-control-1", "control", CONTROL_IP)
        yield Control(node, cluster, paths, ctl, key, host.public_openssh)
    finally:
        if api is not None:
            api.close()
        node.close()


class Recorded:
    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, text: str) -> None:
        self.phases.append(text)

    def progress(self, what: str, done: int, total: int) -> None:
        self.phases.append(f"{what} {done}/{total}")


def workers(*names: str) -> list[Machine]:
    return [machine(n, "worker", f"10.77.0.{20 + i}") for i, n in enumerate(names)]


def test_scale_down_cordons_all_then_drains_each_then_deletes_nodes(ctl: Control) -> None:
    """Two joined workers and one that never joined go: both joined ones are cordoned
    before any pod is evicted, DaemonSet pods stay, emptyDir pods go, and the Node
    objects are deleted only after every drain finished."""
    for w in ("kad-worker-3", "kad-worker-4"):
        ctl.cluster.add_node(w)
    ctl.cluster.add_pod("kad-worker-3", "default", "web-1", "ReplicaSet/web")
    ctl.cluster.add_pod("kad-worker-3", "kube-system", "kube-proxy-a", "DaemonSet/kube-proxy")
    ctl.cluster.add_pod("kad-worker-4", "default", "cache-1", "ReplicaSet/cache")
    ctl.cluster.pods[("default", "cache-1")]["spec"]["volumes"] = [{"name": "s", "emptyDir": {}}]
    doomed = workers("kad-worker-3", "kad-worker-4", "kad-worker-5")
    events = Recorded()

    k8s_admin.drain_before_destroy(
        spec(), [ctl.machine, *doomed], doomed, events, 30, connect=ctl.connect, paths=ctl.paths
    )

    assert ctl.mutations() == [
        ("PATCH", "/api/v1/nodes/kad-worker-3"),
        ("PATCH", "/api/v1/nodes/kad-worker-4"),
        ("POST", "/api/v1/namespaces/default/pods/web-1/eviction"),
        ("POST", "/api/v1/namespaces/default/pods/cache-1/eviction"),
        ("DELETE", "/api/v1/nodes/kad-worker-3"),
        ("DELETE", "/api/v1/nodes/kad-worker-4"),
    ]
    patch = ctl.cluster.made("PATCH", "/api/v1/nodes/kad-worker-3")[0]
    assert patch.body == {"spec": {"unschedulable": True}}
    # Each drain listed exactly its node's pods.
    listed = [call.query.get("fieldSelector") for call in ctl.cluster.made("GET", "/api/v1/pods")]
    assert listed == ["spec.nodeName=kad-worker-3", "spec.nodeName=kad-worker-4"]
    assert ("kube-system", "kube-proxy-a") in ctl.cluster.pods  # DaemonSet pod not evicted
    assert not ctl.cluster.nodes
    assert any("kad-worker-5" in p and "never joined" in p for p in events.phases)
    # Every command ran the kubectl and kubeconfig the paths name, with a request timeout.
    assert all(
        cmd.startswith(f"{KUBECTL} --kubeconfig={ctl.paths.kubeconfig} ") for cmd in ctl.commands
    )
    assert all("--request-timeout=30s" in cmd for cmd in ctl.commands)


def test_a_drain_that_cannot_finish_names_the_node_and_deletes_nothing(ctl: Control) -> None:
    """The pod accepts eviction but never terminates: kubectl drain stops at the
    deadline, and the one-line error names the node, the pod and the way out."""
    ctl.cluster.evictions = "stay"
    ctl.cluster.add_node("kad-worker-2")
    ctl.cluster.add_pod("kad-worker-2", "default", "slow-1", "ReplicaSet/slow")
    doomed = workers("kad-worker-2")

    with pytest.raises(k8s_admin.KubectlFailed) as failed:
        k8s_admin.drain_before_destroy(
            spec(),
            [ctl.machine, *doomed],
            doomed,
            Recorded(),
            1,
            connect=ctl.connect,
            paths=ctl.paths,
        )

    message = str(failed.value)
    assert message.startswith("kad-worker-2: drain did not finish (deadline 1 s)")
    assert "default/slow-1" in message and "--skip-drain" in message
    assert "--drain-timeout SECONDS" in message
    assert "kubectl uncordon kad-worker-2" in message and "\n" not in message
    assert not ctl.cluster.made("DELETE", "/")  # no Node deleted
    assert ctl.cluster.nodes["kad-worker-2"]["spec"]["unschedulable"] is True


def test_a_disruption_budget_that_blocks_the_drain_is_named(ctl: Control) -> None:
    """Evictions answer 429 as a PodDisruptionBudget makes them: the error says so."""
    ctl.cluster.evictions = "pdb"
    ctl.cluster.add_node("kad-worker-2")
    ctl.cluster.add_pod("kad-worker-2", "default", "db-0", "ReplicaSet/db")
    with (
        k8s_admin.open_control(spec(), ctl.machine, ctl.paths, ctl.connect) as node,
        pytest.raises(k8s_admin.KubectlFailed) as failed,
    ):
        k8s_admin.retire_workers(node, ["kad-worker-2"], 1, Recorded())
    assert "pod disruption budget forbids evicting" in str(failed.value)
    assert "kubectl get pdb -A" in str(failed.value)
    assert ("default", "db-0") in ctl.cluster.pods
    assert not ctl.cluster.made("DELETE", "/")


def test_fresh_join_token_is_a_bootstrap_token_secret_and_never_shown(
    ctl: Control, caplog: pytest.LogCaptureFixture
) -> None:
    """The token is a kube-system Secret of type bootstrap.kubernetes.io/token, made by
    `kubectl create` on the control node; it is returned, and appears in no command
    line, event, log record or kubectl output."""
    caplog.set_level(logging.DEBUG)
    events = Recorded()
    before = dt.datetime.now(dt.UTC)

    token = k8s_admin.fresh_join_token(
        spec(), [ctl.machine], events, connect=ctl.connect, paths=ctl.paths
    )

    assert token is not None and TOKEN.match(token), "not a bootstrap token"
    token_id, secret = token.split(".")
    [post] = ctl.cluster.made("POST", "/api/v1/namespaces/kube-system/secrets")
    assert post.query.get("fieldValidation") == "Strict"  # validated by the server
    body = post.body
    assert body["type"] == "bootstrap.kubernetes.io/token"
    assert body["metadata"]["name"] == f"bootstrap-token-{token_id}"
    assert body["metadata"]["namespace"] == "kube-system"
    data = body["stringData"]
    assert (data["token-id"], data["token-secret"]) == (token_id, secret)
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["usage-bootstrap-signing"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    expires = dt.datetime.strptime(data["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before + dt.timedelta(hours=23) < expires < before + dt.timedelta(hours=25)
    shown = "\n".join(ctl.commands + events.phases + [r.getMessage() for r in caplog.records])
    assert secret not in shown and secret not in caplog.text


def test_no_join_token_for_a_control_plane_made_by_this_run(ctl: Control) -> None:
    """A control node not yet bootstrapped runs `kubeadm init` with the PKI's token."""
    fresh = Machine("id-c", "kad-control-1", "control", "Running", CONTROL_IP)
    assert k8s_admin.fresh_join_token(spec(), [fresh], Recorded(), ctl.connect, ctl.paths) is None
    assert ctl.commands == [] and ctl.cluster.calls == []


def test_a_control_node_that_should_answer_and_does_not_is_an_error(ctl: Control) -> None:
    """sshd is down on a Running, bootstrapped control node: no silent skip."""
    ctl.node.stop_sshd()
    doomed = workers("kad-worker-2")
    with pytest.raises(k8s_admin.ControlUnreachable) as failed:
        k8s_admin.drain_before_destroy(
            spec(),
            [ctl.machine, *doomed],
            doomed,
            Recorded(),
            30,
            connect=ctl.connect,
            paths=ctl.paths,
        )
    message = str(failed.value)
    assert message.startswith("kad-control-1: cannot reach the control node over SSH")
    assert "--skip-drain" in message and "\n" not in message
    assert isinstance(failed.value, StackfleetError)
