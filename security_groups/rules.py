"""A firewall rule as stackfleet thinks of it, independent of any cloud's API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One ingress rule on a group: a protocol and port range, from a CIDR or from a group.

    Exactly one of `cidr` and `source_group` is set. `source_group` names one of the
    cluster's own groups (by its full name), so rules stay group-to-group.
    """

    protocol: str  # "tcp" | "udp"
    start_port: int
    end_port: int
    cidr: str | None = None
    source_group: str | None = None

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (
            self.protocol,
            self.start_port,
            self.end_port,
            self.cidr or "",
            self.source_group or "",
        )

    def describe(self) -> str:
        ports = (
            str(self.start_port)
            if self.start_port == self.end_port
            else f"{self.start_port}-{self.end_port}"
        )
        source = self.cidr if self.cidr is not None else f"group {self.source_group}"
        return f"{self.protocol}/{ports} from {source}"
