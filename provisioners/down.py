"""`down`: remove everything tagged with (or named for) the cluster, in the cloud's order.

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
    """Delete the cluster, reading the cloud under the lock unless `live` was just read
    there. A cluster the cloud holds nothing of is left alone, local state included
    (`result.anything` is false)."""
    with cluster_lock(prov, cluster, lock_max_age_s):
        live = live or prov.live_state(cluster)
        if live.is_empty():
            return DownResult(cluster, 0, 0, 0, 0, 0)
        return _down_locked(cluster, prov, events, live, keep_local)


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
            # In the order this cloud needs (its rules about what may go first).
            prov.teardown(live, events.phase)
            break  # every call succeeded (teardown checks everything is gone)
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
