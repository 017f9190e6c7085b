"""`up`'s wait for a joining etcd member never asks faster than the member answers.

Found on the QEMU mini-cloud: one `etcdctl endpoint health` costs an emulated guest about
11 s of its CPU, and asking every 5 s kept the joiner busy answering instead of joining.

Real: etcd_steps.wait_healthy, the loop `up` runs. Simulated: the clock (a fake that the
fake admin's answers advance) and the admin's answers (no etcd, no SSH); the real etcd
and SSH path is test_membership_real.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stackfleet.errors import WaitTimeout
from stackfleet.provisioners import etcd_steps
from stackfleet.provisioners.base import Machine, MachineState

JOINER = Machine("v4", "c-etcd-4", "etcd", MachineState.RUNNING, "10.0.0.4")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SlowAdmin:
    """Answers 'unhealthy' `unhealthy_for` times, each answer taking `answer_s`."""

    def __init__(self, clock: Clock, answer_s: float, unhealthy_for: int) -> None:
        self.clock, self.answer_s, self.left = clock, answer_s, unhealthy_for
        self.asked_at: list[float] = []

    def health(self, via: Machine, endpoints: Sequence[str]) -> dict[str, tuple[bool, str]]:
        self.asked_at.append(self.clock.now)
        self.clock.now += self.answer_s
        self.left -= 1
        return {endpoints[0]: (self.left < 0, "" if self.left < 0 else "not started")}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(etcd_steps, "time", fake)
    return fake


def test_a_member_slower_to_answer_than_the_interval_is_asked_at_most_half_the_time(
    clock: Clock,
) -> None:
    admin = SlowAdmin(clock, answer_s=11.0, unhealthy_for=3)
    etcd_steps.wait_healthy(admin, JOINER, JOINER, deadline_s=300, interval_s=5.0)  # type: ignore[arg-type]
    assert clock.sleeps == [11.0, 11.0, 11.0]
    # Between two questions the member had as long free as it spent answering.
    gaps = [b - a for a, b in zip(admin.asked_at, admin.asked_at[1:], strict=False)]
    assert gaps == [22.0, 22.0, 22.0]


def test_a_member_quick_to_answer_is_asked_every_interval(clock: Clock) -> None:
    admin = SlowAdmin(clock, answer_s=0.3, unhealthy_for=2)
    etcd_steps.wait_healthy(admin, JOINER, JOINER, deadline_s=60, interval_s=5.0)  # type: ignore[arg-type]
    assert clock.sleeps == [5.0, 5.0]


def test_the_wait_gives_up_at_its_deadline_naming_the_member_and_what_it_said(
    clock: Clock,
) -> None:
    admin = SlowAdmin(clock, answer_s=11.0, unhealthy_for=100)
    with pytest.raises(WaitTimeout, match=r"c-etcd-4 to report healthy \(not started\)"):
        etcd_steps.wait_healthy(admin, JOINER, JOINER, deadline_s=60, interval_s=5.0)  # type: ignore[arg-type]
    assert clock.now <= 60 + 11  # the last ask may end past the deadline, never a pause
