"""etcd's raft timing (the spec's `etcd:` section): its heartbeat and election timeout.

etcd's own defaults (100 ms, 1000 ms) suit members on one fast network. Its tuning guide
(https://etcd.io/docs/v3.5/tuning/) says to raise both where round trips or disks are slow:
a leader that cannot send heartbeats in time loses leadership, the cluster re-elects again
and again, and a joining member cannot catch up. etcd itself refuses to start with an
election timeout under 5 heartbeats or over 50 s: the spec refuses those before any VM exists.
"""

from __future__ import annotations

from dataclasses import dataclass

# The spec's key for these (a section, not the etcd role).
SECTION = "etcd"
DEFAULT_HEARTBEAT_MS = 100
DEFAULT_ELECTION_TIMEOUT_MS = 1000
# etcd's own bounds (etcd/server/embed/config.go): election >= 5 heartbeats, <= 50 s.
MIN_ELECTION_HEARTBEATS = 5
MAX_ELECTION_TIMEOUT_MS = 50000


@dataclass(frozen=True)
class EtcdTiming:
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    election_timeout_ms: int = DEFAULT_ELECTION_TIMEOUT_MS

    def env(self) -> dict[str, str]:
        """etcd's environment variables for what differs from its defaults (so a cluster
        at the defaults renders exactly as before these were settings)."""
        out = {}
        if self.heartbeat_ms != DEFAULT_HEARTBEAT_MS:
            out["ETCD_HEARTBEAT_INTERVAL"] = str(self.heartbeat_ms)
        if self.election_timeout_ms != DEFAULT_ELECTION_TIMEOUT_MS:
            out["ETCD_ELECTION_TIMEOUT"] = str(self.election_timeout_ms)
        return out


def timing_problem(heartbeat_ms: int, election_timeout_ms: int) -> str:
    """Why etcd would refuse this pair ("" when it would not)."""
    if election_timeout_ms < MIN_ELECTION_HEARTBEATS * heartbeat_ms:
        return (
            f"{election_timeout_ms} is under {MIN_ELECTION_HEARTBEATS} heartbeats "
            f"({MIN_ELECTION_HEARTBEATS} x {heartbeat_ms} ms), which etcd refuses; use at least "
            f"{MIN_ELECTION_HEARTBEATS * heartbeat_ms} (etcd's guide: about 10 heartbeats)"
        )
    return ""
