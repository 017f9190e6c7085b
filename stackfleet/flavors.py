"""The OS flavors, one object each: everything stackfleet does differently per image.

Adding a flavor is one `Flavor` here (plus a serialiser in cloudconfig_templates if its
boot agent is a new one). Code elsewhere asks the flavor, never tests its name, so a
flavor that forgets a fact fails at the lookup instead of behaving like another one.

Kept free of heavy imports: the CLI reads it for `--help` and `init`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from stackfleet.errors import BadInput

# The boot agents that read userdata, each with its own dialect of #cloud-config: it picks
# the serialiser (cloudconfig_templates/document.py SERIALISERS) and the schema check
# (cloudconfig_templates/validate.py SCHEMA_CHECKS).
COREOS_CLOUDINIT = "coreos-cloudinit"
CLOUD_INIT = "cloud-init"


@dataclass(frozen=True)
class Flavor:
    name: str  # the spec's `os:` value
    default_template: str  # the image a role uses when the spec names no `template:`
    login_user: str  # the image's SSH user (sudo without a password)
    userdata: str  # COREOS_CLOUDINIT | CLOUD_INIT: how documents are written and checked
    bin_dir: str  # where downloaded binaries go (writable and on the units' PATH)
    # Units the image ships that would fight ours for the same port or file: masked.
    masked_units: tuple[str, ...]
    # Packages installed before kubelet starts (the image lacks them); none: it ships them.
    kube_packages: tuple[str, ...]
    # The `ssh` bootstrap strategy: shell commands that install the uploaded final
    # document (args: node name, upload path) and make the agent apply it.
    apply_commands: Callable[[str, str], list[str]]


def _coreos_cloudinit_apply(node: str, upload: str) -> list[str]:
    # coreos-cloudinit applies it now, and again from this path on every boot.
    up = shlex.quote(upload)
    target = "/var/lib/flatcar-install/user_data"
    return [
        f"sudo install -D -m 0600 {up} {target}",
        f"rm -f {up}",
        f"sudo coreos-cloudinit --from-file={target}",
    ]


def _nocloud_seed_apply(node: str, upload: str) -> list[str]:
    # cloud-init prefers a NoCloud seed on the next boot; `clean --reboot` forgets stage 1
    # (a new instance-id makes every per-instance module run again) and boots into it.
    up = shlex.quote(upload)
    seed = "/var/lib/cloud/seed/nocloud"
    meta = shlex.quote(f"instance-id: {node}-final\nlocal-hostname: {node}\n")
    return [
        f"sudo install -D -m 0600 {up} {seed}/user-data",
        f"rm -f {up}",
        f"printf %s {meta} | sudo tee {seed}/meta-data >/dev/null",
        "sudo cloud-init clean --reboot",
    ]


FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor(
            name="flatcar",
            default_template="Flatcar Container Linux stable",
            login_user="core",
            userdata=COREOS_CLOUDINIT,
            bin_dir="/opt/bin",  # /usr is read-only
            masked_units=("etcd-member.service", "flanneld.service"),
            kube_packages=(),
            apply_commands=_coreos_cloudinit_apply,
        ),
        Flavor(
            name="ubuntu",
            default_template="Ubuntu 24.04 LTS",
            login_user="ubuntu",
            userdata=CLOUD_INIT,
            bin_dir="/opt/bin",
            masked_units=(),
            kube_packages=("containerd", "conntrack", "socat", "ethtool", "iptables"),
            apply_commands=_nocloud_seed_apply,
        ),
    )
}
DEFAULT = "flatcar"


def flavor(name: str) -> Flavor:
    """The flavor called `name`; an unknown one is an error, never another's behaviour."""
    try:
        return FLAVORS[name]
    except KeyError:
        known = ", ".join(FLAVORS)
        raise BadInput(
            f"os: {name!r} is not a known flavor; use one of {known}, e.g. os: {DEFAULT}"
        ) from None
