"""Serialise Parts into the #cloud-config dialect of a flavor's boot agent: coreos-cloudinit
(Flatcar) or cloud-init (Ubuntu). What differs between flavors of one agent (stock units to
mask, packages) comes from the `Flavor` (stackfleet/flavors.py).

The document is built as data and dumped by PyYAML, so embedded files are never indented by
hand. Large compressible files travel as `gz+b64` (both agents accept it in write_files).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from stackfleet.cloudconfig_templates.parts import File, Parts
from stackfleet.cloudconfig_templates.templates import render
from stackfleet.flavors import CLOUD_INIT, COREOS_CLOUDINIT, Flavor
from stackfleet.pki import SSHHostKey

HEADER = "#cloud-config\n"
STAGE1_GUARD = (
    "grep -q stackfleet-stage1-guard /var/lib/cloud/instance/user-data.txt"
    " || exec cloud-init clean --reboot"
)
# Compress only where it pays: PEM is already base64 and barely shrinks.
GZIP_MIN_BYTES = 512
GZIP_MAX_RATIO = 0.7
CONTAINERD_CONFIG = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"
"""


# libyaml's emitter writes the same YAML about ten times faster than the pure-Python one
# (rendering a 9-node cluster went from ~0.5 s to ~0.05 s of dumping); PyYAML's wheels
# ship it, a source build may not.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # readable multi-line files
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any]) -> str:
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)


def write_file(f: File) -> dict[str, str]:
    entry = {"path": f.path, "permissions": f.permissions, "owner": "root:root"}
    raw = f.content.encode()
    packed = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
    if len(raw) >= GZIP_MIN_BYTES and len(packed) <= GZIP_MAX_RATIO * len(raw):
        entry |= {"encoding": "gz+b64", "content": packed}
    else:
        entry["content"] = f.content
    return entry


def _host_key_files(key: SSHHostKey) -> list[File]:
    return [
        File(f"/etc/ssh/ssh_host_{key.key_type}_key", key.private_openssh, "0600"),
        File(f"/etc/ssh/ssh_host_{key.key_type}_key.pub", key.public_openssh + "\n"),
    ]


@dataclass(frozen=True)
class Node:
    """What a serialiser writes for one node, besides its role's Parts."""

    flavor: Flavor
    hostname: str
    keys: tuple[str, ...]
    host_key: SSHHostKey
    stage1: bool = False


_OTHER_HOST_KEY_TYPES = ("rsa", "ecdsa", "dsa")


def _hostkey_unit(key_type: str) -> str:
    """coreos-cloudinit has no ssh_keys: a unit puts the pinned key in place and removes
    the image's other host keys."""
    return render(
        "units/stackfleet-ssh-hostkeys.service.j2",
        after=["sshd-keygen.service"],
        requires=[],
        key_path=f"/etc/ssh/ssh_host_{key_type}_key",
        other_types=[t for t in _OTHER_HOST_KEY_TYPES if t != key_type],
    )


def coreos_cloudinit(node: Node, parts: Parts) -> str:
    files = _host_key_files(node.host_key) + parts.files
    units: list[dict[str, Any]] = [{"name": n, "mask": True} for n in node.flavor.masked_units]
    units.append(
        {
            "name": "stackfleet-ssh-hostkeys.service",
            "enable": True,
            "command": "start",
            "content": _hostkey_unit(node.host_key.key_type),
        }
    )
    if any(u.name == "kubelet.service" for u in parts.units):
        units.append({"name": "containerd.service", "enable": True, "command": "start"})
    units += [
        {"name": u.name, "enable": True, "command": "start", "content": u.content}
        for u in parts.units
    ]
    doc: dict[str, Any] = {
        "hostname": node.hostname,
        "ssh_authorized_keys": list(node.keys),
        "write_files": [write_file(f) for f in files],
        # Members reboot one by one by hand, not all at once after an update.
        "coreos": {"update": {"reboot_strategy": "off"}, "units": units},
    }
    return dump(doc)


def cloud_init(node: Node, parts: Parts) -> str:
    host_key = node.host_key
    doc: dict[str, Any] = {
        "hostname": node.hostname,
        "manage_etc_hosts": False,
        "ssh_authorized_keys": list(node.keys),
        # Only the pinned key: none kept from the image; with ssh_keys, none generated.
        "ssh_deletekeys": True,
        "ssh_keys": {
            f"{host_key.key_type}_private": host_key.private_openssh,
            f"{host_key.key_type}_public": host_key.public_openssh,
        },
    }
    files = list(parts.files)
    runcmd: list[list[str]] = []
    if node.stage1:
        # Forget this instance once stage 1 is done, so that the next boot (with the final
        # userdata) runs every per-instance module again.
        runcmd.append(["cloud-init", "clean"])
        # A stop can land before that runcmd. The next boot then skips consuming the final
        # userdata (same instance id) and runs this stage's modules again; bootcmd is
        # one of them, and it sees the final userdata already stored: clean and reboot, so
        # that the boot after consumes it. The marker is this very line.
        doc["bootcmd"] = [["sh", "-c", STAGE1_GUARD]]
    else:
        if any(u.name == "kubelet.service" for u in parts.units):
            if node.flavor.kube_packages:
                doc["package_update"] = True
                doc["packages"] = list(node.flavor.kube_packages)
            files.append(File("/etc/containerd/config.toml", CONTAINERD_CONFIG))
            runcmd.append(["systemctl", "restart", "containerd.service"])
        files += [File(f"/etc/systemd/system/{u.name}", u.content) for u in parts.units]
        runcmd.append(["systemctl", "daemon-reload"])
        runcmd.append(
            ["systemctl", "enable", "--now", "--no-block", *[u.name for u in parts.units]]
        )
    if files:
        doc["write_files"] = [write_file(f) for f in files]
    doc["runcmd"] = runcmd
    return dump(doc)


# Flavor.userdata -> the function that writes that agent's dialect.
SERIALISERS: dict[str, Callable[[Node, Parts], str]] = {
    COREOS_CLOUDINIT: coreos_cloudinit,
    CLOUD_INIT: cloud_init,
}
