"""What one API call hands its handler: the transaction, the parsed request, the clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackfleet.simulator.exoscale import operations
from stackfleet.simulator.exoscale.config import ExoscaleConfig
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
