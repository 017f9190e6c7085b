"""How the engine tells the user what it is doing, without knowing how it is shown."""

from __future__ import annotations

from typing import Protocol


class Events(Protocol):
    def phase(self, text: str) -> None:
        """A step has begun, e.g. "deploying 9 VMs"."""

    def progress(self, what: str, done: int, total: int) -> None:
        """Some of a batch has finished."""


class Silent:
    def phase(self, text: str) -> None:
        pass

    def progress(self, what: str, done: int, total: int) -> None:
        pass
