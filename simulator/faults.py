"""Injected faults and the API rate limit.

Faults come from one seeded RNG; every request draws the same number of values whatever
the outcome, so a given seed and request sequence always gives the same faults.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from stackfleet.simulator.config import FaultConfig


@dataclass(frozen=True)
class RequestFault:
    drop: bool = False
    http5xx: bool = False


# Commands that change nothing: their answers are never "lost" (a retry is harmless).
READ_ONLY_PREFIXES = ("list", "query", "get")


@dataclass(frozen=True)
class JobFault:
    fail: bool = False
    slow: bool = False


class Faults:
    def __init__(self, cfg: FaultConfig | None, epoch: int = 1) -> None:
        """`epoch` counts the simulator processes that have served this state file: the
        embedded simulator starts once per CLI invocation, and a re-run must not meet the
        very same faults again (a real cloud's failures do not replay); the first process
        on a state keeps the seed's own sequence."""
        self.cfg = cfg
        seed = (cfg.seed if cfg else 0) + (epoch - 1) * 1_000_003
        self._rng = random.Random(seed)
        # Its own stream: adding `lost` leaves the other faults of a seed where they were.
        self._lost_rng = random.Random(seed * 7919 + 1)
        self._lock = threading.Lock()

    def on_request(self, command: str) -> RequestFault:
        if self.cfg is None:
            return RequestFault()
        with self._lock:
            drop, http5xx = self._rng.random(), self._rng.random()
        if not self.cfg.applies_to(command):
            return RequestFault()
        return RequestFault(drop=drop < self.cfg.drop, http5xx=http5xx < self.cfg.http5xx)

    def answer_lost(self, command: str) -> str | None:
        """After a mutating command took effect: "reset" (the connection dropped), "504"
        (a proxy gave up waiting) or None (answered). One draw per request, always."""
        if self.cfg is None:
            return None
        with self._lock:
            lost, how = self._lost_rng.random(), self._lost_rng.random()
        if (
            not self.cfg.applies_to(command)
            or command.startswith(READ_ONLY_PREFIXES)
            or lost >= self.cfg.lost
        ):
            return None
        return "reset" if how < 0.5 else "504"

    def on_job(self, command: str) -> JobFault:
        if self.cfg is None:
            return JobFault()
        with self._lock:
            fail, slow = self._rng.random(), self._rng.random()
        if not self.cfg.applies_to(command):
            return JobFault()
        return JobFault(fail=fail < self.cfg.jobfail, slow=slow < self.cfg.slow)


class RateLimiter:
    """CloudStack's api.throttling: at most `per_second` requests per account per second."""

    def __init__(self, per_second: float | None) -> None:
        self.limit = per_second
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, account: str, now: float | None = None) -> int | None:
        """None if allowed (and counted), else the milliseconds to wait."""
        if not self.limit:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen.setdefault(account, deque())
            while seen and seen[0] <= now - 1.0:
                seen.popleft()
            if len(seen) >= self.limit:
                return max(1, math.ceil((seen[0] + 1.0 - now) * 1000))
            seen.append(now)
        return None
