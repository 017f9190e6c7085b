"""A lock held in the cloud: one record per cluster that the cloud refuses to create twice.

Two `up` (or `down`) runs of one cluster from two terminals or two CI jobs must not both
create or delete machines. The provisioner makes the lock atomically (each provider
with a resource its cloud refuses to create twice, named `<cluster>-lock`: see
naming.lock_name), naming the holder as host:pid:time. A holder that is gone (same host,
dead pid) or older than the spec's timeout is taken over, so a killed run never blocks
the next one.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stackfleet.errors import CloudError, Conflict
from stackfleet.provisioners.base import Provisioner

log = logging.getLogger("stackfleet.lock")
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


def describe(cluster: str, holder: str) -> str:
    try:
        host, pid, since = holder.rsplit(":", 2)
        when = time.strftime("%H:%M:%S", time.localtime(int(since)))
    except ValueError:
        return f"cluster {cluster!r} is locked by another stackfleet run ({holder})"
    return (
        f"cluster {cluster!r} is locked by another stackfleet run (pid {pid} on {host}, "
        f"since {when}); wait for it to finish"
    )


@contextmanager
def cluster_lock(prov: Provisioner, cluster: str, max_age_s: float) -> Iterator[None]:
    """Take the cluster's lock (taking over a stale one), release it at the end."""
    me = holder_id()
    try:
        held = prov.take_lock(cluster, me)
        if held is not None and is_stale(held, max_age_s):
            log.info("taking over the lock of %s from %s (gone or too old)", cluster, held)
            prov.release_lock(cluster, held)
            held = prov.take_lock(cluster, me)
    except KeyboardInterrupt:
        # Interrupted (Ctrl-C, SIGTERM) while taking it: the cloud may have made it.
        _release(prov, cluster, me)
        raise
    if held is not None:
        raise Conflict(describe(cluster, held))
    _HELD.add(me)
    try:
        yield
    finally:
        _HELD.discard(me)
        try:
            _release(prov, cluster, me)
        except KeyboardInterrupt:
            _release(prov, cluster, me)  # interrupted while releasing: finish, then stop
            raise


def _release(prov: Provisioner, cluster: str, me: str) -> None:
    """Remove the lock if it is still ours; a failed release is taken over later."""
    for attempt in range(3):
        try:
            prov.release_lock(cluster, me)
            return
        except CloudError as exc:
            log.warning("releasing the lock of %s (attempt %d): %s", cluster, attempt + 1, exc)
