"""Kubernetes chores done on the control node over SSH: drain and remove workers, mint tokens.

kubectl runs on the control node, with the admin kubeconfig `kubeadm init` wrote there,
through a connection whose host key is pinned (ssh_client). The operator needs nothing
but port 22 (open to `access.ssh_cidrs`); the API port may well be closed to them.

- Scale-down: every worker being removed is cordoned first (so that pods evicted from
  one do not land on the next), then drained one at a time with a deadline, and only when
  all are drained are their Node objects deleted. Any failure is one line naming the node
  and what to do, raised before anything is deleted, so the caller destroys nothing.
- Late workers: the bootstrap token in the cluster's PKI was made for `kubeadm init` and
  lives 24 h, so workers added later get a fresh one, created on the control node as a
  `bootstrap-token-<id>` Secret (the Kubernetes bootstrap-token format). The token goes
  to kubectl on stdin, never on a command line, and never into a log line or message.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine, MachineState
from stackfleet.provisioners.events import Events
from stackfleet.roles import CONTROL, WORKER
from stackfleet.spec import Spec

DEFAULT_DRAIN_DEADLINE_S = 300
# Each API call kubectl makes, bounded so an apiserver that hangs cannot hold `up` forever.
REQUEST_TIMEOUT_S = 30
# As kubeadm's own default: a worker whose first boot is slow (the reboot strategy) still
# joins; the controller-manager's tokencleaner deletes the Secret once it has expired.
TOKEN_TTL_S = 24 * 3600
# The group kubeadm's RBAC lets create CSRs and read kubeadm-config: `kubeadm join` needs it.
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
# The `up` options that let the operator past a drain that cannot finish (cli/).
SKIP_DRAIN_FLAG = "--skip-drain"
DRAIN_TIMEOUT_FLAG = "--drain-timeout"


@dataclass(frozen=True)
class KubectlPaths:
    """Where kubectl and the admin kubeconfig are on the control node."""

    kubectl: str = "/opt/bin/kubectl"  # cloudconfig_templates.parts installs it in BIN_DIR
    kubeconfig: str = "/etc/kubernetes/admin.conf"  # written by `kubeadm init`, root's, 0600
    sudo: bool = True
    # kubectl's discovery cache; None: its default (~/.kube/cache of the user running it).
    cache_dir: str | None = None


class KubectlFailed(CloudError):
    """kubectl on the control node failed; the message names the node and what to do."""


class ControlUnreachable(CloudError):
    """The control node could not be reached over SSH although it should be."""


# What `kubectl drain` says when it cannot finish -> what the operator can do about it.
_DRAIN_ADVICE = (
    (
        "disruption budget",
        "a pod disruption budget forbids evicting its pods: relax the budget "
        "(kubectl get pdb -A) or give its workload more replicas",
    ),
    (
        "declare no controller",
        "it runs pods that no controller manages: delete them or move them elsewhere",
    ),
    (
        "local storage",
        "it runs pods with local storage: delete them or move them elsewhere",
    ),
    (
        "global timeout reached",
        "its pods did not leave in time: see `kubectl get pods -A -o wide` for what holds "
        f"them, or give the drain longer ({DRAIN_TIMEOUT_FLAG} SECONDS)",
    ),
)


class ControlNode:
    """kubectl on the control node, through one pinned SSH connection (paramiko client)."""

    def __init__(self, client: Any, name: str, paths: KubectlPaths | None = None) -> None:
        self.client = client
        self.name = name
        self.paths = paths or KubectlPaths()

    def close(self) -> None:
        self.client.close()

    # ---- one kubectl call -----------------------------------------------------------------

    def command(self, args: Sequence[str]) -> str:
        """The shell command line for kubectl `args`; never given a secret (see stdin)."""
        words = [self.paths.kubectl, f"--kubeconfig={self.paths.kubeconfig}"]
        if self.paths.cache_dir:
            words.append(f"--cache-dir={self.paths.cache_dir}")
        words += [f"--request-timeout={REQUEST_TIMEOUT_S}s", *args]
        line = " ".join(shlex.quote(w) for w in words)
        # -n: fail instead of waiting for a password prompt nobody will answer.
        return f"sudo -n {line}" if self.paths.sudo else line

    def kubectl(
        self, args: Sequence[str], timeout_s: float, stdin: str | None = None
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr). `stdin` is how a secret reaches kubectl."""
        import paramiko

        try:
            sin, sout, serr = self.client.exec_command(self.command(args), timeout=timeout_s)
            if stdin is not None:
                sin.write(stdin.encode())
            sin.channel.shutdown_write()
            out, err = sout.read().decode(), serr.read().decode()
            return sout.channel.recv_exit_status(), out, err
        except TimeoutError:
            raise WaitTimeout(
                f"{self.name}: kubectl {args[0]} gave no answer within {timeout_s:.0f} s"
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ControlUnreachable(
                f"{self.name}: SSH connection lost during kubectl {args[0]} ({exc})"
            ) from None

    # ---- workers ----------------------------------------------------------------------------

    def cordon(self, node: str) -> bool:
        """Mark `node` unschedulable; False when it has no Node object (it never joined)."""
        code, _, err = self.kubectl(["cordon", node], REQUEST_TIMEOUT_S + 10)
        if code == 0:
            return True
        if _no_such_node(err, node):
            return False
        raise KubectlFailed(
            f"{node}: cordon failed on {self.name} ({_last_line(err, code)}); nothing was "
            f"drained, deleted or destroyed: fix that, or pass {SKIP_DRAIN_FLAG} to destroy "
            "the workers without draining"
        )

    def drain(self, node: str, deadline_s: float) -> None:
        """Evict `node`'s pods (DaemonSet pods stay, emptyDir data goes) within the deadline."""
        args = [
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            f"--timeout={int(deadline_s)}s",
        ]
        # kubectl stops at its own --timeout; the SSH read waits a little longer for that.
        code, _, err = self.kubectl(args, deadline_s + REQUEST_TIMEOUT_S + 10)
        if code == 0 or _no_such_node(err, node):
            return
        advice = next(
            (text for marker, text in _DRAIN_ADVICE if marker in err),
            f"kubectl said: {_last_line(err, code)}",
        )
        pending = _pending_pods(err)
        held = f" (pods left: {', '.join(pending[:3])}{', ...' if len(pending) > 3 else ''})"
        raise KubectlFailed(
            f"{node}: drain did not finish (deadline {deadline_s:.0f} s)"
            f"{held if pending else ''}; "
            f"{advice}. The node "
            f"stays cordoned (kubectl uncordon {node} to undo) and no Node was deleted, no VM "
            f"destroyed; or pass {SKIP_DRAIN_FLAG} to destroy it without draining"
        )

    def delete_nodes(self, nodes: Sequence[str]) -> None:
        """Delete these Node objects (one kubectl call; those already gone are fine)."""
        args = ["delete", "node", *nodes, "--ignore-not-found"]
        code, _, err = self.kubectl(args, REQUEST_TIMEOUT_S * 2 + 10)
        if code != 0:
            raise KubectlFailed(
                f"{', '.join(nodes)}: deleting their Node objects on {self.name} failed "
                f"({_last_line(err, code)}); no VM was destroyed: run `up` again"
            )

    # ---- tokens -----------------------------------------------------------------------------

    def create_bootstrap_token(
        self, ttl_s: float = TOKEN_TTL_S, now: dt.datetime | None = None
    ) -> str:
        """A fresh bootstrap token, stored on the cluster; returned to the caller only."""
        from stackfleet.pki import new_bootstrap_token

        token = new_bootstrap_token()
        expires = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=ttl_s)
        manifest = json.dumps(bootstrap_token_secret(token, expires))
        code, _, err = self.kubectl(["create", "-f", "-"], REQUEST_TIMEOUT_S + 10, stdin=manifest)
        if code != 0:
            said = _last_line(err, code).replace(token.split(".")[1], "<secret>")
            raise KubectlFailed(
                f"{self.name}: could not create a bootstrap token for the new workers "
                f"({said}); no VM was created: check the control plane, then run `up` again"
            )
        return token


def bootstrap_token_secret(token: str, expires: dt.datetime) -> dict[str, Any]:
    """The Secret the Kubernetes bootstrap-token authenticator and signer read.

    kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens: type
    bootstrap.kubernetes.io/token, named bootstrap-token-<token id>, in kube-system.
    """
    token_id, token_secret = token.split(".")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"bootstrap-token-{token_id}",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/managed-by": "stackfleet"},
        },
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "stackfleet: for workers added to a running cluster",
            "token-id": token_id,
            "token-secret": token_secret,
            "expiration": expires.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            # authentication: kubelet's TLS bootstrap; signing: cluster-info for discovery.
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": TOKEN_GROUP,
        },
    }


def _no_such_node(stderr: str, node: str) -> bool:
    # Exactly the apiserver's NotFound for this Node: "command not found" is another story.
    return f'nodes "{node}" not found' in stderr


# How kubectl drain names the pods it could not move: evicting pods/"web-1" -n "default",
# or waiting for pod "web-1" in namespace "default".
_PENDING = re.compile(r'pods?/?\s?"([^"]+)"(?: -n | in namespace )"([^"]+)"')


def _pending_pods(stderr: str) -> list[str]:
    found = {f"{ns}/{name}" for name, ns in _PENDING.findall(stderr)}
    return sorted(found)


def _last_line(stderr: str, code: int) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {code}"


# ---- the engine's entry points --------------------------------------------------------------


def control_of(machines: Sequence[Machine]) -> Machine | None:
    return next((m for m in machines if m.role == CONTROL), None)


def why_unreachable(spec: Spec, control: Machine | None) -> str | None:
    """Why kubectl cannot run on the control node at all, in a few words; None if it can.

    These are the cases where skipping with a note is right (nothing runs there, or no
    API server yet). A control node that should answer and does not is an error instead
    (open_control), since destroying undrained workers is what the operator must choose.
    """
    if control is None:
        return "the cluster has no control node"
    if control.simulated:
        return "the simulator's VMs run nothing (hypervisor Simulator)"
    if control.state != MachineState.RUNNING:
        return f"control node {control.name} is {control.state}"
    if control.tags.get(BOOTSTRAP_TAG) != "done":
        return f"control node {control.name} has not been bootstrapped yet"
    if not (control.public_ip or control.private_ip):
        return f"control node {control.name} has no IP"
    if not spec.ssh_cidrs:
        return "access.ssh_cidrs is empty, so no node is reachable over SSH"
    return None


@contextmanager
def open_control(
    spec: Spec,
    control: Machine,
    paths: KubectlPaths | None = None,
    connect: Callable[[Machine], Any] | None = None,
    otherwise: str = "",
) -> Iterator[ControlNode]:
    """An SSH session to the control node, with its host key pinned; closed on exit.
    `otherwise` ends the one-line error when it cannot connect (what else the operator
    can do)."""
    from stackfleet.provisioners.ssh_client import HostKeyMismatch

    try:
        client = (connect or _pinned_connect(spec))(control)
    except HostKeyMismatch:
        raise
    except (CloudError, OSError) as exc:
        raise ControlUnreachable(
            f"{control.name}: cannot reach the control node over SSH ({exc}); allow this "
            f"machine in access.ssh_cidrs{otherwise}"
        ) from None
    node = ControlNode(client, control.name, paths)
    try:
        yield node
    finally:
        node.close()


def _pinned_connect(spec: Spec) -> Callable[[Machine], Any]:
    from stackfleet import state
    from stackfleet.provisioners.reach import check_reachable
    from stackfleet.provisioners.ssh_client import connect, login_user
    from stackfleet.provisioners.ssh_push import host_key

    def ssh(machine: Machine) -> Any:
        check_reachable([machine])
        address = machine.public_ip or machine.private_ip or ""
        key = state.operator_ssh_key(spec.name).private_path
        return connect(address, login_user(spec.os), key, host_key(spec.name, machine.name))

    return ssh


def retire_workers(
    node: ControlNode, workers: Sequence[str], deadline_s: float, events: Events
) -> None:
    """Cordon every worker, drain each in turn, then delete their Node objects.

    Raises (one line, naming the worker) before any Node is deleted if a drain cannot
    finish within `deadline_s`: the caller must then destroy nothing.
    """
    joined = [w for w in workers if node.cordon(w)]
    never = [w for w in workers if w not in joined]
    if never:
        events.phase(f"{', '.join(never)}: no Node object (never joined): nothing to drain")
    what = f"{len(joined)} worker(s) to drain"
    for done, worker in enumerate(joined):
        events.progress(what, done, len(joined))
        events.phase(f"draining {worker} (deadline {deadline_s:.0f} s)")
        node.drain(worker, deadline_s)
    if joined:
        events.progress(what, len(joined), len(joined))
    if joined:
        node.delete_nodes(joined)
        events.phase(f"deleted the Node objects of {', '.join(joined)}")


def drain_before_destroy(
    spec: Spec,
    machines: Sequence[Machine],
    doomed: Sequence[Machine],
    events: Events,
    deadline_s: float = DEFAULT_DRAIN_DEADLINE_S,
    skip_drain: bool = False,
    connect: Callable[[Machine], Any] | None = None,
    paths: KubectlPaths | None = None,
) -> None:
    """What `up` calls before destroying `doomed`: drain and remove the workers among them.

    Skips with a note where kubectl cannot run at all (why_unreachable) or when the
    operator passed --skip-drain; raises when a drain cannot finish (nothing deleted).
    """
    workers = [m.name for m in doomed if m.role == WORKER]
    if not workers:
        return
    names = ", ".join(workers)
    if skip_drain:
        events.phase(f"not draining {names}: {SKIP_DRAIN_FLAG} was given")
        return
    control = control_of([m for m in machines if m not in doomed])
    why = why_unreachable(spec, control)
    if why or control is None:
        events.phase(f"not draining {names}: {why}")
        return
    events.phase(f"cordoning {names} on {control.name}")
    otherwise = f", or pass {SKIP_DRAIN_FLAG} to destroy the workers without draining"
    with open_control(spec, control, paths, connect, otherwise) as node:
        retire_workers(node, workers, deadline_s, events)


def fresh_join_token(
    spec: Spec,
    machines: Sequence[Machine],
    events: Events,
    connect: Callable[[Machine], Any] | None = None,
    paths: KubectlPaths | None = None,
    ttl_s: float = TOKEN_TTL_S,
) -> str | None:
    """The token workers added now join with, made on the running control node.

    None when the control plane is being made by this run (its `kubeadm init` creates the
    PKI's token, valid 24 h from then), or when the control node cannot be reached at all
    (then a note says new workers get the PKI's token, which `kubeadm init` made to last
    24 h).
    """
    control = control_of(machines)
    if control is None or control.tags.get(BOOTSTRAP_TAG) != "done":
        return None
    why = why_unreachable(spec, control)
    if why:
        events.phase(
            f"new workers get the cluster's first bootstrap token (valid 24 h after the control "
            f"node was made), not a fresh one: {why}"
        )
        return None
    events.phase(f"creating a bootstrap token for the new workers on {control.name}")
    otherwise = "; no VM was created"
    with open_control(spec, control, paths, connect, otherwise) as node:
        return node.create_bootstrap_token(ttl_s)
