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


@dataclass(frozen=True)
class JobFault:
    fail: bool = False
    slow: bool = False


class Faults:
    def __init__(self, cfg: FaultConfig | None) -> None:
        self.cfg = cfg
        self._rng = random.Random(cfg.seed if cfg else 0)
        self._lock = threading.Lock()

    def on_request(self, command: str) -> RequestFault:
        if self.cfg is None:
            return RequestFault()
        with self._lock:
            drop, http5xx = self._rng.random(), self._rng.random()
        if not self.cfg.applies_to(command):
            return RequestFault()
        return RequestFault(drop=drop < self.cfg.drop, http5xx=http5xx < self.cfg.http5xx)

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
