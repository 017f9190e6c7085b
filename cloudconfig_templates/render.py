"""Public rendering API: one cloud-config per node, from plain data."""

from __future__ import annotations

import base64

from stackfleet.cloudconfig_templates import document
from stackfleet.cloudconfig_templates.model import RenderInput
from stackfleet.cloudconfig_templates.parts import Parts, role_parts
from stackfleet.errors import BadInput
from stackfleet.flavors import flavor


def _check(inp: RenderInput, node_name: str) -> None:
    flavor(inp.flavor)  # an unknown flavor fails here, in one line
    node = inp.node(node_name)
    if node.name not in inp.pki.ssh_host_keys:
        raise BadInput(f"nodes: no SSH host key generated for {node.name!r}")


def _document(inp: RenderInput, node_name: str, parts: Parts, stage1: bool) -> str:
    flv = flavor(inp.flavor)
    node = document.Node(
        flv, node_name, inp.ssh_authorized_keys, inp.pki.ssh_host_keys[node_name], stage1
    )
    return document.SERIALISERS[flv.userdata](node, parts)


def render_node(inp: RenderInput, node_name: str) -> str:
    """The final cloud-config for one node (all etcd IPs known; kube nodes need api_endpoint)."""
    _check(inp, node_name)
    node = inp.node(node_name)
    if not node.ip:
        raise BadInput(f"nodes: IP of {node_name!r} not known yet; render stage 1 instead")
    return _document(inp, node_name, role_parts(inp, node), stage1=False)


def render_stage1(inp: RenderInput, node_name: str) -> str:
    """First-boot userdata for the `reboot` strategy: users, keys, host key, hostname only."""
    _check(inp, node_name)
    return _document(inp, node_name, Parts(), stage1=True)


def render_cluster(inp: RenderInput) -> dict[str, str]:
    return {n.name: render_node(inp, n.name) for n in inp.nodes}


def userdata_size(text: str) -> int:
    """Length of the base64 text CloudStack stores and limits (vm.userdata.max.length)."""
    return len(base64.b64encode(text.encode()))
