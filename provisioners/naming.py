"""Names of a cluster's resources, and reading a machine's role back from its name.

Names are how a re-run finds what an interrupted run created before it could tag it:
a resource is created first and tagged second, and the gap between is where a kill lands.
"""

from __future__ import annotations

import re

from stackfleet.roles import ROLES


def machine_name(cluster: str, role: str, index: int) -> str:
    return f"{cluster}-{role}-{index}"


def group_name(cluster: str, role: str) -> str:
    return f"{cluster}-{role}"


def key_name(cluster: str) -> str:
    return f"{cluster}-key"


def lock_name(cluster: str) -> str:
    return f"{cluster}-lock"


def spread_group_name(cluster: str) -> str:
    """The anti-affinity group of the roles that spread (Role.spread: etcd). The name keeps
    "etcd" so that clusters made before it was a table entry are still found."""
    return f"{cluster}-etcd-spread"


def role_from_machine_name(cluster: str, name: str) -> str | None:
    match = re.fullmatch(rf"{re.escape(cluster)}-({'|'.join(ROLES)})-[0-9]+", name)
    return match.group(1) if match else None


def role_from_group_name(cluster: str, name: str) -> str | None:
    match = re.fullmatch(rf"{re.escape(cluster)}-({'|'.join(ROLES)})", name)
    return match.group(1) if match else None
