"""init, validate, schema, render, kubeconfig: commands about the spec and its documents.

Only `render --from-cloud` and `kubeconfig` read the cloud (for real IPs); the rest work
offline, rendering with example IPs from TEST-NET-1 (192.0.2.0/24) and a throw-away PKI,
so they never touch the cluster's real keys.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import global_options, handle_errors, load, settings, spec_option
from stackfleet.cli.output import emit, note
from stackfleet.errors import BadInput, NotFound

SPEC_TEMPLATE = """\
# stackfleet cluster spec. Reference: README.md ("Spec reference");
# editors can check it against `stackfleet schema`.
name: {name}                 # lower-case letters, digits, '-'; names every resource
cloud:
  profile: {profile}         # 'simulator', or a section of ~/.cloudstack.ini
  zone: {zone}               # name or id; `stackfleet plan` suggests names if wrong
  # endpoint: https://cloud.example.com/client/api   # overrides the ini/env endpoint
  # bootstrap: auto          # auto | allocate | reboot | ssh (auto: from the zone type)
  # concurrency: 8           # VMs deployed at once; raise it for clouds that cope
  # timeout_s: 1800          # every wait gives up after this, naming what it waited for
  # userdata_limit: 32768    # the cloud's vm.userdata.max.length (base64 characters)
os: {os}                     # flatcar | ubuntu
roles:
  etcd: {{count: 3}}          # odd: 1, 3 or 5
  control: {{count: 1}}
  workers: {{count: 2}}
  # each role also takes: template (name or id), offering (name or id), disk_gb
network:
  pod_cidr: 10.244.0.0/16
  service_cidr: 10.96.0.0/12
  flannel_backend: vxlan
access:
  ssh_cidrs: []              # who may SSH to every node, e.g. [198.51.100.7/32]
  api_cidrs: []              # who may reach kube-apiserver (6443)
  nodeport_cidrs: []         # opt-in: who may reach NodePorts (30000-32767) on workers
kubernetes:
  version: 1.31.4
# artifacts:
#   base_url: http://mirror.internal/stackfleet   # a mirror with the upstream file names
# ttl: 2h                    # `stackfleet down --expired` removes the cluster after this
"""


@click.command()
@spec_option
@click.option("--name", default="demo", show_default=True, help="Cluster name.")
@click.option("--profile", default="simulator", show_default=True, help="Cloud profile.")
@click.option("--zone", default="sim-zrh-1", show_default=True, help="Zone name or id.")
@click.option(
    "--os", "flavor", type=click.Choice(["flatcar", "ubuntu"]), default="flatcar", show_default=True
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@global_options
@handle_errors
def init(spec_path: Path, name: str, profile: str, zone: str, flavor: str, force: bool) -> None:
    """Write a commented cluster spec (stackfleet.yaml unless -f)."""
    from stackfleet.spec import parse_spec

    text = SPEC_TEMPLATE.format(name=name, profile=profile, zone=zone, os=flavor)
    import yaml

    parse_spec(yaml.safe_load(text), source="the generated spec")  # --name etc. checked here
    if spec_path.exists() and not force:
        raise BadInput(f"{spec_path}: already exists; pass --force to overwrite")
    spec_path.write_text(text)
    note(f"wrote {spec_path}; next: stackfleet plan -f {spec_path}")


@click.command()
@global_options
@handle_errors
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12), for editors and CI linters."""
    from stackfleet.spec import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


def _example_nodes(spec: Any) -> list[Any]:
    from stackfleet.provisioners.bootstrap import NodeAddress

    return [
        NodeAddress(name, role, f"192.0.2.{i + 10}")
        for i, (name, role) in enumerate(spec.machine_names())
    ]


def _cloud_nodes(spec: Any) -> list[Any]:
    from stackfleet.cli.cluster_cmds import _spec_target
    from stackfleet.provisioners.bootstrap import NodeAddress
    from stackfleet.provisioners.session import open_cloud

    with open_cloud(_spec_target(spec)) as prov:
        machines = prov.live_state(spec.name).machines
    if not machines:
        raise NotFound(f"cluster {spec.name!r} has no VMs in the cloud; run `stackfleet up`")
    return [NodeAddress(m.name, m.role, m.private_ip) for m in machines]


def _render(spec: Any, from_cloud: bool) -> tuple[dict[str, str], Any, Any]:
    """(node -> document, nodes, the RenderInput used)."""
    from stackfleet.cloudconfig_templates.render import render_node
    from stackfleet.provisioners.bootstrap import render_input

    nodes = _cloud_nodes(spec) if from_cloud else _example_nodes(spec)
    if from_cloud:
        from stackfleet import state

        inp = render_input(spec, nodes, state.operator_ssh_key(spec.name).public_openssh)
    else:
        with tempfile.TemporaryDirectory(prefix="stackfleet-render-") as scratch:
            inp = render_input(spec, nodes, EXAMPLE_KEY, Path(scratch))
    return {n.name: render_node(inp, n.name) for n in nodes}, nodes, inp


EXAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleOperatorKeyForRenderingOnly00000 example"


@click.command()
@spec_option
@click.option("--node", help="Print this node's cloud-config (it holds private keys).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each node's cloud-config to DIR/<node>.yaml (0600).",
)
@click.option("--from-cloud", is_flag=True, help="Use the cluster's real IPs and PKI.")
@global_options
@handle_errors
def render(spec_path: Path, node: str | None, out: Path | None, from_cloud: bool) -> None:
    """Show the cloud-config each node gets, and its size against the userdata limit.

    Offline it uses example IPs (192.0.2.0/24) and a throw-away PKI.
    """
    from stackfleet.cloudconfig_templates.render import userdata_size
    from stackfleet.pki import write_private

    spec = load(spec_path)
    docs, nodes, _ = _render(spec, from_cloud)
    if node is not None:
        if node not in docs:
            raise NotFound(f"--node: no node {node!r}; nodes: {', '.join(docs)}")
        click.echo(docs[node], nl=False)
        return
    if out is not None:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text in docs.items():
            write_private(out / f"{name}.yaml", text)
        note(f"wrote {len(docs)} documents to {out}")
    roles = {n.name: n.role for n in nodes}
    data = [
        {
            "node": name,
            "role": roles[name],
            "bytes": len(text.encode()),
            "base64": userdata_size(text),
            "limit": spec.userdata_limit,
        }
        for name, text in docs.items()
    ]
    over = [d["node"] for d in data if d["base64"] > spec.userdata_limit]
    if over:
        note(
            f"{len(over)} document(s) over cloud.userdata_limit ({spec.userdata_limit}): "
            f"{', '.join(over)}; `up` would refuse them"
        )
    rows = [(d["node"], d["role"], d["bytes"], d["base64"], d["limit"]) for d in data]
    emit(data, settings().output, "userdata", ["node", "role", "bytes", "base64", "limit"], rows)


@click.command()
@spec_option
@global_options
@handle_errors
def validate(spec_path: Path) -> None:
    """Check the spec, then render and check every node's document (offline).

    Checks: the spec schema and cross-field rules; each document's YAML, cloud-init schema
    (ubuntu) or coreos-cloudinit keys (flatcar), units via systemd-analyze, etcd flags.
    """
    from stackfleet.cloudconfig_templates.render import userdata_size
    from stackfleet.cloudconfig_templates.validate import validate_cluster, validate_document

    spec = load(spec_path)
    docs, nodes, inp = _render(spec, from_cloud=False)
    problems = [
        f"{n.name}: {p}" for n in nodes for p in validate_document(spec.os, n.role, docs[n.name])
    ]
    limit = spec.userdata_limit
    sizes = {n.name: userdata_size(docs[n.name]) for n in nodes}
    problems += [
        f"{name}: userdata is {size} base64 characters, over cloud.userdata_limit ({limit})"
        for name, size in sizes.items()
        if size > limit
    ]
    problems += list(validate_cluster(inp, docs))
    if problems:
        raise BadInput(f"{spec_path}: {len(problems)} problem(s): " + "; ".join(problems))
    note(f"{spec_path}: ok ({len(docs)} node documents checked)")


@click.command()
@spec_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default: the cluster's state dir).",
)
@global_options
@handle_errors
def kubeconfig(spec_path: Path, out: Path | None) -> None:
    """Write the cluster's admin kubeconfig (0600) and print its path."""
    from stackfleet import state
    from stackfleet.pki import admin_kubeconfig, load_or_create, write_private

    spec = load(spec_path)
    nodes = _cloud_nodes(spec)
    control = next((n for n in nodes if n.role == "control" and n.ip), None)
    if control is None:
        raise NotFound(f"cluster {spec.name!r} has no control node with an IP yet")
    from stackfleet.statestore import pull

    pull(spec.name, spec.state)  # a state store's PKI, if the spec or env names one
    pki_dir = state.cluster_dir(spec.name) / "pki"
    if not (pki_dir / "kube-ca.crt").exists():
        raise NotFound(
            f"{pki_dir}: no PKI for {spec.name!r}: bring it with `stackfleet state pull` "
            "or set `state:` (or STACKFLEET_STATE) to its store"
        )
    from stackfleet.cloudconfig_templates.model import NodeInfo

    pki = load_or_create(pki_dir, spec.name, [NodeInfo(n.name, n.role, n.ip) for n in nodes])
    path = out or state.cluster_dir(spec.name) / "admin.kubeconfig"
    write_private(path, admin_kubeconfig(pki, spec.name, f"{control.ip}:6443"))
    click.echo(str(path))
