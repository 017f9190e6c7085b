"""`stackfleet kubeconfig`: the cluster's admin kubeconfig, to a file, stdout, or merged.

It reads the cloud (the control node's addresses) and the local PKI (the Kubernetes CA);
the admin client certificate is reused from the last call until it nears expiry
(stackfleet/kubeconfig.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from stackfleet.cli.common import global_options, handle_errors, load, settings, spec_option
from stackfleet.cli.output import note
from stackfleet.errors import BadInput, NotFound
from stackfleet.roles import CONTROL

API_PORT = 6443
SERVER_CHOICES = ("auto", "public", "private")


@click.command()
@spec_option
@click.option(
    "--out",
    metavar="FILE",
    help="Write it to FILE (0600); `-` prints it on stdout. Default: the cluster's state dir.",
)
@click.option(
    "--merge",
    is_flag=True,
    help="Merge it into $KUBECONFIG (its first file) or ~/.kube/config, as `kubectl "
    "config` would: cluster, user and context named after the cluster, the context made "
    "current, other entries kept.",
)
@click.option(
    "--server",
    default="auto",
    show_default=True,
    metavar="public|private|auto|URL",
    help="The API server's address: the control node's public (static NAT) IP, its "
    "private IP, auto (public if the cloud reports one, else private), or a URL such as "
    "https://k8s.example.com:6443.",
)
@global_options
@handle_errors
def kubeconfig(spec_path: Path, out: str | None, merge: bool, server: str) -> None:
    """Write the cluster's admin kubeconfig (0600) and print its path.

    The admin client certificate is kept in the cluster's state dir and reused until a
    third of its life (at least 30 days) is left.
    """
    from stackfleet import kubeconfig as kc
    from stackfleet import state
    from stackfleet.cli.cluster_cmds import _spec_target
    from stackfleet.pki import CertKey, write_private
    from stackfleet.provisioners.session import open_cloud
    from stackfleet.statestore import pull

    if merge and out is not None:
        raise BadInput("--merge and --out: pick one (--merge writes to $KUBECONFIG)")
    url = _checked_url(server) if server not in SERVER_CHOICES else None
    spec = load(spec_path)
    with open_cloud(_spec_target(spec)) as prov:
        machines = prov.live_state(spec.name).machines
    control = next((m for m in machines if m.role == CONTROL and m.private_ip), None)
    if control is None:
        raise NotFound(f"cluster {spec.name!r} has no control node with an IP yet")
    url = url or _server_url(server, control)

    pull(spec.name, spec.state)  # a state store's PKI, if the spec or env names one
    pki_dir = state.cluster_dir(spec.name) / "pki"
    ca_cert, ca_key = pki_dir / "kube-ca.crt", pki_dir / "kube-ca.key"
    if not (ca_cert.is_file() and ca_key.is_file()):
        raise NotFound(
            f"{pki_dir}: no Kubernetes CA for {spec.name!r}: bring it with `stackfleet state "
            "pull` or set `state:` (or STACKFLEET_STATE) to its store"
        )
    kube_ca = CertKey(ca_cert.read_text(), ca_key.read_text())
    kept = state.cluster_dir(spec.name) / "admin.kubeconfig"
    admin, reused = kc.admin_credentials(kube_ca, kept)
    doc = kc.document(spec.name, url, kube_ca.cert_pem, admin)
    text = kc.dump(doc)
    write_private(kept, text)  # where the certificate is kept for the next call

    if out == "-":
        click.echo(json.dumps(doc, indent=2) if settings().output == "json" else text, nl=False)
        return
    if merge:
        path = kc.merge_target(os.environ.get("KUBECONFIG"), Path.home())
        existing = kc.read_kubeconfig(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, kc.dump(kc.merged(existing, doc)))
        note(f"merged context {spec.name!r} into {path}; it is the current context")
    else:
        path = Path(out) if out else kept
        if path != kept:
            write_private(path, text)
    if settings().output == "json":
        click.echo(
            json.dumps(
                {
                    "path": str(path),
                    "cluster": spec.name,
                    "context": spec.name,
                    "server": url,
                    "merged": merge,
                    "certificate": {
                        "not_after": kc.not_after(admin).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "reused": reused,
                    },
                },
                indent=2,
            )
        )
    else:
        click.echo(str(path))


def _server_url(choice: str, control: Any) -> str:
    if choice == "private" or (choice == "auto" and not control.public_ip):
        return f"https://{control.private_ip}:{API_PORT}"
    if not control.public_ip:
        raise NotFound(
            f"--server public: the cloud reports no public IP for {control.name} (no static "
            f"NAT to it; in a shared or security-group network its address "
            f"{control.private_ip} is the one to use): pass --server private, or the "
            "address that reaches it, e.g. --server https://k8s.example.com:6443"
        )
    return f"https://{control.public_ip}:{API_PORT}"


def _checked_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise BadInput(
            f"--server {value!r}: give public, private, auto, or an https URL of the API "
            "server, e.g. https://k8s.example.com:6443"
        )
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise BadInput(f"--server {value!r}: the port is not a number, e.g. :6443") from None
    return value.rstrip("/")
