"""After a 429 the client keeps to the cloud's window: bursts under the limit go at once.

Real: CloudStackAPI.call's retry loop and pacing, and the simulator's RateLimiter (the
model of CloudStack's api.throttling: at most N requests per account in any second).
Simulated: the network (the request goes straight to the limiter) and the clock, which
advances only when the client sleeps, so the figures are exact and the test takes no time.
"""

from __future__ import annotations

from typing import Any

import pytest

from stackfleet.provisioners.cloudstack.connection import CloudStackAPI, RateLimited
from stackfleet.provisioners.cloudstack.credentials import Credentials
from stackfleet.simulator.faults import RateLimiter

LIMIT = 10


class ThrottlingCloud:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        self.limiter = RateLimiter(LIMIT)
        self.accepted: list[float] = []
        self.refused = 0
        self.api = CloudStackAPI(
            Credentials("http://127.0.0.1:1/client/api", "k", "s", "test"),
            sleep=self.sleep,
            clock=lambda: self.now,
        )
        monkeypatch.setattr(self.api, "_send", self.send)

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def send(self, command: str, params: Any, post: bool) -> dict[str, Any]:
        wait_ms = self.limiter.check("account", self.now)
        if wait_ms is not None:
            self.refused += 1
            raise RateLimited(f"{command}: throttled by the cloud", retry_after_s=wait_ms / 1000)
        self.accepted.append(self.now)
        return {}

    def calls(self, n: int) -> float:
        """n calls one after another; how long they took on the cloud's clock."""
        started = self.now
        for _ in range(n):
            self.api.call("listZones")
        return self.now - started


def test_one_refusal_teaches_the_limit_then_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = ThrottlingCloud(monkeypatch)
    took = cloud.calls(60)
    assert cloud.refused == 1  # the first: how the client learns the limit
    assert len(cloud.accepted) == 60
    # Close to the limit's own pace (60 at 10 a second: 5 s after the first 10), not slower.
    assert took < 6.5


def test_a_burst_under_the_limit_after_a_pause_goes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = ThrottlingCloud(monkeypatch)
    cloud.calls(30)  # throttled once, now pacing
    cloud.now += 2.0  # a quiet spell (the client waits for a job)
    assert cloud.calls(LIMIT - 1) == 0.0  # all sent at once: nothing in the window
    assert cloud.refused == 1


def test_a_cloud_that_refuses_sooner_than_the_estimate_is_still_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = ThrottlingCloud(monkeypatch)
    cloud.calls(20)
    cloud.limiter.limit = 4  # the operator lowers api.throttling.max meanwhile
    cloud.calls(20)
    assert len(cloud.accepted) == 40  # every call answered in the end (retry after N ms)
