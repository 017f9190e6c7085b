"""A lock held in the cloud, as a tag on the cluster's etcd group.

Two `up` (or `down`) runs of one cluster from two terminals or two CI jobs must not both
create machines. The lock records who holds it; a holder that is gone (same host, dead
pid) or older than the spec's timeout is taken over, so a killed run never blocks the next.

Tags have no compare-and-set, so taking the lock is: check, set, re-read, wait a moment
(longer than a competing run takes between its check and its set), re-read again. Of two
runs that both saw it free, the later writer wins and the earlier one sees that and
refuses. Beneath the lock, CloudStack itself refuses a second VM, group or key of the
same name, so even a lost race cannot create a duplicate.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from stackfleet.errors import CloudError, Conflict
from stackfleet.provisioners.base import LOCK_TAG, Provisioner

log = logging.getLogger("stackfleet.lock")
# How long a freshly set lock must stay ours before we act on it.
SETTLE_S = float(os.environ.get("STACKFLEET_LOCK_SETTLE_S", "0.5"))
# Holders taken by this process and not yet released: a lock naming this process but not
# in here was left by an earlier run in the same process (one that failed to release it).
_HELD: set[str] = set()


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


def is_stale(value: str, max_age_s: float, now: float | None = None) -> bool:
    try:
        host, pid, since = value.rsplit(":", 2)
        pid_n, since_n = int(pid), int(since)
    except ValueError:
        return True  # unreadable: nobody can be holding it meaningfully
    if (now or time.time()) - since_n > max_age_s:
        return True
    if host == socket.gethostname():
        if pid_n == os.getpid():
            return value not in _HELD
        try:
            os.kill(pid_n, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def check_free(tags: Mapping[str, str], max_age_s: float, cluster: str) -> None:
    held = tags.get(LOCK_TAG)
    if held and not is_stale(held, max_age_s):
        host, pid, since = held.rsplit(":", 2)
        raise Conflict(
            f"cluster {cluster!r} is locked by another stackfleet run (pid {pid} on {host}, "
            f"since {time.strftime('%H:%M:%S', time.localtime(int(since)))}); wait for it "
            "to finish"
        )


@contextmanager
def cluster_lock(
    prov: Provisioner,
    cluster: str,
    max_age_s: float,
    known_tags: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Take the lock (the etcd group must exist), re-read to confirm, release at the end.

    `known_tags`: the cluster tags the caller has just read (up's plan), which saves a
    read; the confirming read after setting the tag is always made.
    """
    me = holder_id()
    check_free(
        prov.live_state(cluster).tags if known_tags is None else known_tags, max_age_s, cluster
    )
    prov.set_cluster_tags(cluster, {LOCK_TAG: me})
    _HELD.add(me)
    try:
        for settle in (0.0, SETTLE_S):
            time.sleep(settle)
            tags = prov.live_state(cluster).tags
            if tags.get(LOCK_TAG) != me:
                # Someone wrote after us: theirs if it is live, else nobody's (retry later).
                check_free(tags, max_age_s, cluster)
                raise Conflict(
                    f"cluster {cluster!r}: another stackfleet run took the lock at the same "
                    "moment; run again"
                )
    except BaseException:
        _HELD.discard(me)
        raise
    try:
        yield
    finally:
        _HELD.discard(me)
        _release(prov, cluster, me)


def _release(prov: Provisioner, cluster: str, me: str) -> None:
    """Remove the lock if it is still ours; a failed release is taken over later."""
    for attempt in range(3):
        try:
            if prov.live_state(cluster).tags.get(LOCK_TAG) != me:
                return
            prov.set_cluster_tags(cluster, {LOCK_TAG: None})
            return
        except CloudError as exc:
            log.warning("releasing the lock of %s (attempt %d): %s", cluster, attempt + 1, exc)
