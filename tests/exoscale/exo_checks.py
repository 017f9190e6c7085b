"""Checks shared by the exoscale simulator tests: the request log's schema verdicts."""

from __future__ import annotations

from typing import Any

from stackfleet.simulator.exoscale import ExoscaleSimulator
from stackfleet.simulator.exoscale.requestlog import read


def log_entries(sim: ExoscaleSimulator) -> list[dict[str, Any]]:
    assert sim.config.request_log is not None
    return read(sim.config.request_log)


def assert_all_valid(sim: ExoscaleSimulator) -> int:
    """Every answered request and every answer validated against the OpenAPI schemas; returns
    how many requests were checked."""
    entries = [e for e in log_entries(sim) if e["status"] == 200]
    assert entries, "no request reached the simulator"
    bad = [e for e in entries if e["request_schema"] != "ok" or e["response_schema"] != "ok"]
    assert not bad, bad
    assert sim.backend.schema_failures == 0
    return len(entries)
