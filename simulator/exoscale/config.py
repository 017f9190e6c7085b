"""The exoscale simulator's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ZONE = "ch-gva-2"


@dataclass(frozen=True)
class ExoscaleConfig:
    # SQLite state, shareable by several processes; None keeps the cloud in memory.
    state_path: Path | None = None
    request_log: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    # The zone this endpoint is: on the real cloud each zone has its own api-<zone> endpoint.
    zone: str = DEFAULT_ZONE
    # Seconds an operation stays "pending" before it turns "success" (and its effect, such as
    # an instance reaching "running", shows). Operations on one resource run one after another.
    operation_latency: float = 0.5
    api_key: str | None = None
    secret: str | None = None
