"""init, validate, schema, render: commands about the spec and its documents.

Only `render --from-cloud` reads the cloud (for real IPs); the rest work
offline, rendering with example IPs from TEST-NET-1 (192.0.2.0/24) and a throw-away PKI,
so they never touch the cluster's real keys. With `-o json` each prints the shape
docs/output.md gives for it on stdout; notes for people stay on stderr.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click

from stackfleet.cli.common import global_options, handle_errors, load, settings, spec_option
from stackfleet.cli.output import emit, note
from stackfleet.errors import BadInput, NotFound, SpecError
from stackfleet.flavors import DEFAULT as DEFAULT_FLAVOR
from stackfleet.flavors import FLAVORS

# `init` writes `stackfleet schema`'s output under this name beside the spec, and the
# spec's modeline points at it: yaml-language-server (VS Code, Neovim, Helix...) resolves
# a relative modeline path against the YAML file, and needs no network for it.
SCHEMA_FILE = "stackfleet.schema.json"
MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}\n"

SPEC_TEMPLATE = (
    MODELINE
    + """\
# stackfleet cluster spec. Reference: README.md ("Spec reference"). The line above lets
# editors check it against ./{schema_file}, the output of `stackfleet schema`
# (refresh it after an upgrade: stackfleet schema > {schema_file}).
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
# ttl: 1h30m                 # `stackfleet down --expired` removes the cluster after this
"""
)


def schema_text() -> str:
    """What `stackfleet schema` prints, and `init` writes beside the spec."""
    from stackfleet.spec import SCHEMA

    return json.dumps(SCHEMA, indent=2) + "\n"


@click.command()
@spec_option
@click.option("--name", default="demo", show_default=True, help="Cluster name.")
@click.option("--profile", default="simulator", show_default=True, help="Cloud profile.")
@click.option("--zone", default="sim-zrh-1", show_default=True, help="Zone name or id.")
@click.option(
    "--os", "flavor", type=click.Choice(list(FLAVORS)), default=DEFAULT_FLAVOR, show_default=True
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@global_options
@handle_errors
def init(spec_path: Path, name: str, profile: str, zone: str, flavor: str, force: bool) -> None:
    """Write a commented cluster spec (stackfleet.yaml unless -f), and beside it
    stackfleet.schema.json, which the spec's first line points editors at."""
    import yaml

    from stackfleet.spec import SCHEMA, parse_spec

    text = SPEC_TEMPLATE.format(
        name=name, profile=profile, zone=zone, os=flavor, schema_file=SCHEMA_FILE
    )
    parse_spec(yaml.safe_load(text), source="the generated spec")  # --name etc. checked here
    schema_path = spec_path.parent / SCHEMA_FILE
    if spec_path.exists() and not force:
        raise BadInput(f"{spec_path}: already exists; pass --force to overwrite")
    if not force and not _ours_or_absent(schema_path, SCHEMA["$id"]):
        raise BadInput(
            f"{schema_path}: exists and is not stackfleet's schema; move it, or pass --force "
            "to overwrite it"
        )
    for path, content in ((spec_path, text), (schema_path, schema_text())):
        try:
            path.write_text(content)
        except OSError as exc:
            raise BadInput(f"{path}: cannot write it ({exc.strerror or exc})") from None
    note(f"wrote {spec_path} and {schema_path}; next: stackfleet plan -f {spec_path}")
    if settings().output == "json":
        emit(
            {"spec": str(spec_path), "schema": str(schema_path), "schema_id": SCHEMA["$id"]},
            "json",
            "",
            [],
            [],
        )


def _ours_or_absent(path: Path, schema_id: str) -> bool:
    """Refreshing a schema an earlier `init` or `stackfleet schema` wrote is fine; a
    file of the same name that is something else is the user's."""
    try:
        return json.loads(path.read_text()).get("$id") == schema_id
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):
        return False


@click.command()
@global_options
@handle_errors
def schema() -> None:
    """Print the spec's JSON Schema (draft 2020-12), for editors and CI linters.

    It is JSON whatever -o says. `stackfleet validate` checks specs against exactly this.
    """
    click.echo(schema_text(), nl=False)


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
    from stackfleet.pki import write_private
    from stackfleet.provisioners.registry import userdata_rule

    spec = load(spec_path)
    docs, nodes, _ = _render(spec, from_cloud)
    roles = {n.name: n.role for n in nodes}

    def sizes(name: str) -> dict[str, Any]:
        text = docs[name]
        # "base64": the size as the spec's cloud counts it (docs/output.md#render).
        size = {"bytes": len(text.encode()), "base64": userdata_rule(spec.provider).size(text)}
        return {"node": name, "role": roles[name], **size, "limit": spec.userdata_limit}

    if node is not None:
        if node not in docs:
            raise NotFound(f"--node: no node {node!r}; nodes: {', '.join(docs)}")
        if settings().output == "json":
            emit({**sizes(node), "document": docs[node]}, "json", "", [], [])
        else:
            click.echo(docs[node], nl=False)
        return
    if out is not None:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text in docs.items():
            write_private(out / f"{name}.yaml", text)
        note(f"wrote {len(docs)} documents to {out}")
    data = [
        {**sizes(name), "file": str(out / f"{name}.yaml") if out is not None else None}
        for name in docs
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
    from stackfleet.cloudconfig_templates.validate import validate_cluster
    from stackfleet.provisioners.registry import userdata_rule

    as_json = settings().output == "json"
    try:
        spec = load(spec_path)
    except SpecError as exc:
        if as_json:
            found = [_problem("spec", where, said) for where, said in exc.problems]
            _emit_validation(spec_path, [], found)
        raise
    except BadInput as exc:
        if as_json:
            _emit_validation(spec_path, [], [_problem("file", str(spec_path), str(exc))])
        raise
    docs, nodes, inp = _render(spec, from_cloud=False)
    limit = spec.userdata_limit
    rule = userdata_rule(spec.provider)  # measured as the spec's cloud measures
    sizes = {n.name: rule.size(docs[n.name]) for n in nodes}
    # validate_cluster checks every document, then what must agree between them.
    # validate_cluster's lines start with the node, or `etcd` for a disagreement.
    problems = [_located(line, docs) for line in validate_cluster(inp, docs)]
    problems += [
        _problem(
            "document",
            name,
            f"userdata is {size} {rule.unit}, over cloud.userdata_limit ({limit})",
        )
        for name, size in sizes.items()
        if size > limit
    ]
    checked = [
        {"node": n.name, "role": n.role, "base64": sizes[n.name], "limit": limit} for n in nodes
    ]
    if as_json:
        _emit_validation(spec_path, checked, problems)
    if problems:
        said = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        raise BadInput(f"{spec_path}: {len(problems)} problem(s): {said}")
    note(f"{spec_path}: ok ({len(docs)} node documents checked)")


def _problem(kind: str, where: str, message: str) -> dict[str, str]:
    return {"kind": kind, "where": where, "message": message}


def _located(line: str, docs: dict[str, str]) -> dict[str, str]:
    """'demo-etcd-1: problem' -> a document's problem; 'etcd: ...' -> the cluster's."""
    where, _, message = line.partition(": ")
    if not message:
        return _problem("cluster", "", line)
    return _problem("document" if where in docs else "cluster", where, message)


def _emit_validation(
    spec_path: Path, nodes: list[dict[str, Any]], problems: list[dict[str, str]]
) -> None:
    result = {"spec": str(spec_path), "ok": not problems, "nodes": nodes, "problems": problems}
    emit(result, "json", "", [], [])
