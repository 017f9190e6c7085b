"""Diff the rules a cluster wants with the rules its groups hold.

Adds only what is missing; revokes only rules stackfleet made (tagged) and no longer
wants, so a rule an operator added by hand survives a re-run. A wanted rule that exists
untagged (an interrupted run created it, then died before tagging) is adopted, not added
again; identical managed duplicates collapse to one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stackfleet.security_groups.rules import Rule


class ExistingRule(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def rule(self) -> Rule: ...
    @property
    def managed(self) -> bool: ...


@dataclass
class RuleChanges:
    add: dict[str, list[Rule]] = field(default_factory=dict)
    revoke: list[str] = field(default_factory=list)
    adopt: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.add or self.revoke or self.adopt)


def diff_rules(
    desired: Mapping[str, set[Rule]], current: Mapping[str, Iterable[ExistingRule]]
) -> RuleChanges:
    changes = RuleChanges()
    for group, wanted in desired.items():
        seen: set[Rule] = set()
        for existing in current.get(group, ()):
            if existing.rule in wanted and existing.rule not in seen:
                seen.add(existing.rule)
                if not existing.managed:
                    changes.adopt.append(existing.id)
            elif existing.managed:
                changes.revoke.append(existing.id)
        missing = sorted(wanted - seen, key=Rule.sort_key)
        if missing:
            changes.add[group] = missing
    for group, rules in current.items():
        if group not in desired:
            changes.revoke += [r.id for r in rules if r.managed]
    return changes


def open_to_world(desired: Mapping[str, set[Rule]]) -> list[tuple[str, Rule]]:
    """Every rule open to 0.0.0.0/0 or ::/0: the audit lists them, the spec must ask for them."""
    return [
        (group, rule)
        for group, rules in desired.items()
        for rule in sorted(rules, key=Rule.sort_key)
        if rule.cidr in ("0.0.0.0/0", "::/0")
    ]
