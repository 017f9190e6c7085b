"""The rules each role's group needs: the port openings of stackfleet/roles.py as rules.

Sources are the cluster's own groups wherever a role's opening names roles, so nothing is
opened to a CIDR unless the spec's access lists name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stackfleet.roles import ROLES
from stackfleet.security_groups.rules import Rule


@dataclass(frozen=True)
class Access:
    ssh_cidrs: tuple[str, ...] = ()
    api_cidrs: tuple[str, ...] = ()
    nodeport_cidrs: tuple[str, ...] = ()


def desired_rules(
    roles: Sequence[str], access: Access, group_name: Callable[[str], str]
) -> dict[str, set[Rule]]:
    """Group name -> the set of rules it must hold, for the roles present."""
    present = [r for r in ROLES if r in roles]
    rules: dict[str, set[Rule]] = {}
    for name in present:
        bucket = rules[group_name(name)] = set()
        for opening in ROLES[name].opens:
            port = opening.port
            cidrs: tuple[str, ...] = (
                getattr(access, opening.from_access) if opening.from_access else ()
            )
            groups = [g for g in opening.from_roles if g in present]
            bucket.update(Rule(port.protocol, port.start, port.end, cidr=c) for c in cidrs)
            bucket.update(
                Rule(port.protocol, port.start, port.end, source_group=group_name(g))
                for g in groups
            )
    return rules
