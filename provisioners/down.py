"""`down`: remove everything tagged with (or named for) the cluster, in dependency order.

Needs no local state: the cloud is searched by tag and name. Safe to run twice, and
after an interrupted `up` or `down`: whatever is already gone counts as done.
"""

from __future__ import annotations

import calendar
import shutil
import time
from dataclasses import dataclass

from stackfleet import state
from stackfleet.errors import CloudError, Conflict, CredentialsError
from stackfleet.provisioners.base import LiveState, Provisioner
from stackfleet.provisioners.events import Events
from stackfleet.provisioners.lock import cluster_lock


@dataclass(frozen=True)
class DownResult:
    cluster: str
    machines: int
    groups: int
    rules: int
    keys: int
    spread_groups: int

    @property
    def anything(self) -> bool:
        return bool(self.machines or self.groups or self.keys or self.spread_groups)


# A job can fail on the cloud's side (530) and a delete can race a VM that is still
# going away: `down` re-reads the cloud and tries again, then checks nothing is left.
DOWN_PASSES = 6


def down(
    cluster: str,
    prov: Provisioner,
    events: Events,
    live: LiveState | None = None,
    lock_max_age_s: float = 1800,
    keep_local: bool = False,
) -> DownResult:
    with cluster_lock(prov, cluster, lock_max_age_s):
        return _down_locked(cluster, prov, events, live or prov.live_state(cluster), keep_local)


def _down_locked(
    cluster: str, prov: Provisioner, events: Events, live: LiveState, keep_local: bool
) -> DownResult:
    result = DownResult(
        cluster,
        len(live.machines),
        len(live.groups),
        sum(len(g.rules) for g in live.groups),
        len(live.keys),
        len(live.spread_groups),
    )
    for attempt in range(1, DOWN_PASSES + 1):
        try:
            _remove(prov, live, events)
            break  # every call succeeded (teardown checks the VMs are gone)
        except (CredentialsError, Conflict):
            raise
        except CloudError as exc:
            if attempt == DOWN_PASSES:
                raise
            events.phase(f"pass {attempt} stopped ({exc}); reading the cloud again")
        live = prov.live_state(cluster)
        if live.is_empty():
            break
    else:  # pragma: no cover - the last pass raises instead
        raise CloudError(
            f"cluster {cluster!r}: still not empty after {DOWN_PASSES} passes: {_left(live)}"
        )
    if not keep_local:
        shutil.rmtree(state.home() / "clusters" / cluster, ignore_errors=True)
    return result


def _left(live: LiveState) -> str:
    names = [m.name for m in live.machines] + [g.name for g in live.groups]
    names += [k.name for k in live.keys] + [s.name for s in live.spread_groups]
    return ", ".join(names)


def _remove(prov: Provisioner, live: LiveState, events: Events) -> None:
    """VMs and group-to-group rules go at once (CloudStack refuses to delete a group that
    a rule allows, even its own); then the groups, the affinity group and the key."""
    group_rules = _interleaved(
        [[r.id for r in g.rules if r.rule.source_group] for g in live.groups]
    )
    spread = [s.id for s in live.spread_groups if s.id]
    if live.machines or group_rules or spread:
        events.phase(
            f"destroying {len(live.machines)} VM(s) and {len(spread)} affinity group(s), "
            f"revoking {len(group_rules)} group rule(s)"
        )
        prov.teardown([m.id for m in live.machines], group_rules, spread)
    if live.groups:
        events.phase(f"deleting {len(live.groups)} security group(s)")
        prov.delete_groups([g.id for g in live.groups])
    for key in live.keys:
        prov.delete_ssh_key(key.name)
    prov.settle()


def _interleaved(chains: list[list[str]]) -> list[str]:
    """Round-robin, longest chain first: a cloud that runs one group's rule jobs in turn
    then works on every group from the start."""
    ordered = sorted(chains, key=len, reverse=True)
    return [
        chain[i]
        for i in range(max(map(len, ordered), default=0))
        for chain in ordered
        if i < len(chain)
    ]


def expired_clusters(prov: Provisioner, now: float | None = None) -> list[str]:
    """Clusters whose `stackfleet:expires` tag lies in the past, for CI janitor jobs."""
    moment = now if now is not None else time.time()
    names = []
    for summary in prov.list_clusters():
        if summary.expires is None:
            continue
        try:
            when = calendar.timegm(time.strptime(summary.expires, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            continue
        if when < moment:
            names.append(summary.name)
    return names
