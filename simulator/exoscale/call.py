"""What one API call hands its handler: the transaction, the parsed request, the clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackfleet.simulator.exoscale import operations
from stackfleet.simulator.exoscale.config import ExoscaleConfig
from stackfleet.simulator.exoscale.errors import conflict
from stackfleet.simulator.state import Doc, Tx


@dataclass
class Call:
    tx: Tx
    operation: str
    path: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    now: float
    config: ExoscaleConfig

    def start(
        self,
        command: str,
        link: str,
        resource_id: str | None = None,
        effect: dict[str, Any] | None = None,
    ) -> Doc:
        """A pending operation on `link` (e.g. /instance/<id>) that succeeds after the latency."""
        return operations.start(
            self.tx, self.now, self.config.operation_latency, command, link, resource_id, effect
        )

    def new_name(self, kind: str, noun: str) -> str:
        """The body's name for a new `kind`; 409 when one has it already, as exoscale refuses
        a second security group (or anti-affinity group) of one name."""
        name: str = self.body["name"]
        if any(doc["name"] == name for doc in self.tx.all(kind)):
            raise conflict(f"{noun} named {name!r} exists already")
        return name
