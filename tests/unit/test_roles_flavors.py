"""Roles and flavors live in one table and one object each (stackfleet/roles.py, flavors.py).

Real: the renderer, the security-group rule sets, the PKI (real keys in a tmp dir), and,
where installed, `cloud-init schema`, systemd-analyze and shellcheck on the rendered
documents. The extra flavor and role are registered only for the test (monkeypatched).
"""

from __future__ import annotations

import ast
import io
import re
import shutil
import tokenize
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sf_render import make_input

from stackfleet import flavors, roles
from stackfleet.cloudconfig_templates.model import NodeInfo
from stackfleet.cloudconfig_templates.render import render_cluster, render_node
from stackfleet.cloudconfig_templates.validate import etcd_env, files_of, units_of, validate_cluster
from stackfleet.errors import BadInput, SpecError
from stackfleet.pki import load_or_create
from stackfleet.provisioners import naming, ssh_push
from stackfleet.provisioners.ssh_client import login_user
from stackfleet.security_groups.rulesets import Access, desired_rules
from stackfleet.spec import SCHEMA, parse_spec

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("stackfleet", "cli", "provisioners", "cloudconfig_templates", "security_groups")

DEBIAN = flavors.Flavor(
    name="debian",
    default_template="Debian 12",
    login_user="debian",
    userdata=flavors.CLOUD_INIT,
    bin_dir="/usr/local/bin",
    masked_units=(),
    kube_packages=("containerd", "conntrack"),
    apply_commands=flavors.FLAVORS["ubuntu"].apply_commands,
)


def _validators_installed() -> bool:
    return all(shutil.which(t) for t in ("cloud-init", "systemd-analyze", "shellcheck"))


def test_a_new_flavor_is_one_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A flavor registered in FLAVORS alone renders, validates, logs in and pushes."""
    monkeypatch.setitem(flavors.FLAVORS, "debian", DEBIAN)
    inp = make_input(tmp_path / "pki", "debian", etcd=3, workers=2)
    docs = render_cluster(inp)
    control = yaml.safe_load(docs["control-0"])
    assert control["packages"] == ["containerd", "conntrack"]
    assert "ExecStart=/usr/local/bin/kubelet" in units_of("debian", control)["kubelet.service"]
    assert login_user("debian") == "debian"
    assert (
        ssh_push.apply_commands("debian", "n1", "up.yaml")[-1] == "sudo cloud-init clean --reboot"
    )
    if _validators_installed():
        assert validate_cluster(inp, docs) == []


def test_unknown_flavor_fails_in_one_line(tmp_path: Path) -> None:
    """No flavor falls through to another's behaviour: not at render, login or spec load."""
    inp = make_input(tmp_path / "pki", "flatcar", etcd=1, workers=0)
    with pytest.raises(BadInput, match=r"^os: 'gentoo' is not a known flavor; use one of"):
        render_node(replace(inp, flavor="gentoo"), "etcd-0")
    with pytest.raises(BadInput, match="gentoo"):
        login_user("gentoo")
    with pytest.raises(SpecError, match="os"):
        parse_spec(
            {
                "name": "demo",
                "cloud": {"zone": "z"},
                "os": "gentoo",
                "roles": {"etcd": {"count": 1}},
            }
        )


def test_the_spec_schema_and_defaults_come_from_the_registries() -> None:
    assert SCHEMA["properties"]["os"]["enum"] == list(flavors.FLAVORS)
    assert list(SCHEMA["properties"]["roles"]["properties"]) == [
        r.spec_key for r in roles.ROLES.values()
    ]
    spec = parse_spec(
        {
            "name": "demo",
            "cloud": {"zone": "z"},
            "os": "ubuntu",
            "roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}},
        }
    )
    for r in spec.roles:
        assert r.template == flavors.FLAVORS["ubuntu"].default_template
        assert r.offering == roles.ROLES[r.role].default_offering


def test_a_new_role_is_one_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A role added to ROLES alone gets its group and rules, its name, and rendered nodes."""
    https = roles.Port("https", "tcp", 443, 443)
    ingress = roles.Role(
        name="ingress",
        spec_key="ingress",
        noun="ingress node",
        default_offering="Small",
        spread=False,
        etcd_member=False,
        kube_node=True,
        kubeadm="join",
        opens=(roles.Opening(https, from_access="api_cidrs"),),
    )
    monkeypatch.setitem(roles.ROLES, "ingress", ingress)
    rules = desired_rules(
        ["etcd", "control", "ingress"], Access(api_cidrs=("198.51.100.0/24",)), lambda r: f"c-{r}"
    )
    assert {r.describe() for r in rules["c-ingress"]} == {"tcp/443 from 198.51.100.0/24"}
    assert naming.role_from_machine_name("demo", "demo-ingress-2") == "ingress"
    assert roles.order("ingress") == 3
    inp = make_input(tmp_path / "pki", "flatcar", etcd=1, workers=0)
    nodes = (*inp.nodes, NodeInfo("ingress-0", "ingress", "10.231.0.41"))
    inp = replace(inp, nodes=nodes, pki=load_or_create(tmp_path / "pki", "demo", nodes))
    doc = yaml.safe_load(render_node(inp, "ingress-0"))
    assert "kind: JoinConfiguration" in files_of(doc)["/etc/kubernetes/kubeadm.yaml"]


def _ports_in(text: str) -> set[int]:
    return {int(p) for p in re.findall(r"(?:https?://[^\s:/\"',]+):([0-9]+)", text)}


def test_rendered_ports_are_the_security_group_ports(tmp_path: Path) -> None:
    """Every port the units and flags name is a port of the table the rules are made from,
    and the role listening on it opens it (loopback-only listeners excepted)."""
    inp = make_input(tmp_path / "pki", "flatcar", etcd=3, workers=1)
    docs = render_cluster(inp)
    rules = desired_rules(list(roles.ROLES), Access(api_cidrs=("0.0.0.0/0",)), lambda r: r)
    opened = {g: {r.start_port for r in rs} for g, rs in rules.items()}
    table = {p.start for p in roles.ports()}

    env = etcd_env(docs["etcd-0"])
    listen = _ports_in(env["ETCD_LISTEN_CLIENT_URLS"] + " " + env["ETCD_LISTEN_PEER_URLS"])
    assert listen == {roles.ETCD_CLIENT.start, roles.ETCD_PEER.start}
    assert listen <= opened["etcd"] and listen <= table
    assert _ports_in(env["ETCD_LISTEN_METRICS_URLS"]) == {roles.ETCD_METRICS_LOOPBACK.start}
    assert "127.0.0.1" in env["ETCD_LISTEN_METRICS_URLS"]

    control = files_of(yaml.safe_load(docs["control-0"]))
    kubeadm = list(yaml.safe_load_all(control["/etc/kubernetes/kubeadm.yaml"]))
    bind = kubeadm[0]["localAPIEndpoint"]["bindPort"]
    assert bind == roles.KUBE_API.start and bind in opened["control"]
    etcd_urls = " ".join(kubeadm[1]["etcd"]["external"]["endpoints"])
    flannel = control["/etc/flannel/options.env"]
    assert _ports_in(etcd_urls) == _ports_in(flannel) == {roles.ETCD_CLIENT.start}


# Where a role's or flavor's name may still be written as a literal, and why.
ALLOWED = {
    "stackfleet/roles.py": "the role table",
    "stackfleet/flavors.py": "the flavor objects",
}
ALLOWED_LINES = {
    ("stackfleet/spec.py", 'counts.get("'): "the spec's cross-field rules name their keys",
    ("stackfleet/spec_schema.py", '"required": ["etcd"]'): "the schema requires the etcd key",
    ("cloudconfig_templates/flatcar_schema.py", '"etcd":'): "coreos-cloudinit's dead section",
    ("cloudconfig_templates/parts.py", '"etcd": {'): "kubeadm's ClusterConfiguration key",
    ("stackfleet/etcd_timing.py", 'SECTION = "etcd"'): "the spec's etcd timing section's key",
}
NAMES = {*roles.ROLES, *(r.spec_key for r in roles.ROLES.values()), *flavors.FLAVORS}


def test_no_module_branches_on_a_role_or_flavor_name() -> None:
    """Outside roles.py and flavors.py, code names a role by its constant and asks a flavor
    for its facts: no string literal equal to a role, spec key or flavor name."""
    found = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
                if tok.type != tokenize.STRING or not tok.string.lstrip("rbuRBU").startswith(
                    ('"', "'")
                ):
                    continue
                try:
                    value = ast.literal_eval(tok.string)
                except (ValueError, SyntaxError):
                    continue
                if value in NAMES and not any(
                    rel == f and snippet in tok.line for f, snippet in ALLOWED_LINES
                ):
                    found.append(f"{rel}:{tok.start[0]}: {tok.line.strip()}")
    assert found == []
