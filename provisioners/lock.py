"""A lock held in the cloud, as a tag on the cluster's etcd group.

Two `up` (or `down`) runs of one cluster from two terminals or two CI jobs must not both
create machines. The lock records who holds it; a holder that is gone (same host, dead
pid) or older than the spec's timeout is taken over, so a killed run never blocks the next.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from stackfleet.errors import Conflict
from stackfleet.provisioners.base import LOCK_TAG, Provisioner


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
    tags = prov.live_state(cluster).tags
    if tags.get(LOCK_TAG) != me:
        check_free(tags, max_age_s, cluster)
    try:
        yield
    finally:
        prov.set_cluster_tags(cluster, {LOCK_TAG: None})
