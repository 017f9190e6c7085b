"""How the engine tells the user what it is doing, without knowing how it is shown.

The engine names each step and counts what it waits for in machines (never in API jobs:
a VM's deploy and start are one machine). It does not keep time: the display stamps
each line and, while a step lasts, says at least every few seconds what it still waits
for and for how long (cli/progress.py), so a long wait is never silent.
"""

from __future__ import annotations

from typing import Protocol


class Events(Protocol):
    def phase(self, text: str) -> None:
        """A step has begun, e.g. "deploying 9 VMs". The same text again (a poll loop
        saying it waits) is the same step: it is not shown twice."""

    def progress(self, what: str, done: int, total: int) -> None:
        """`done` of `total` machines are through; `what` names the wait, e.g.
        "9 machines to start". Reported at 0 too, so the display knows the wait early."""


class Silent:
    def phase(self, text: str) -> None:
        pass

    def progress(self, what: str, done: int, total: int) -> None:
        pass
