"""Fixtures for the exoscale simulator tests.

Real: PyPI's official `exoscale` client (exoscale.api.v2.Client, unmodified, with its own
EXO2-HMAC-SHA256 signer from requests-exoscale-auth), the OpenAPI spec that package ships, HTTP
over loopback. Simulated: the exoscale cloud behind the endpoint (instances run nothing).

The client's `wait()` polls every 3 s at first (its `_poll_interval`); the tests shorten that
module-level pacing function only, so a run takes seconds. The client's requests and signing are
untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackfleet.simulator.exoscale import ExoscaleConfig, ExoscaleSimulator


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ExoscaleSimulator]:
    cfg = ExoscaleConfig(
        state_path=tmp_path / "exoscale.sqlite",
        request_log=tmp_path / "requests.jsonl",
        operation_latency=0.1,
    )
    with ExoscaleSimulator.start(cfg) as running:
        yield running


@pytest.fixture
def client(sim: ExoscaleSimulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    import exoscale.api.v2 as v2

    monkeypatch.setattr(v2, "_poll_interval", lambda run_time: 0.05)
    return v2.Client(sim.api_key, sim.secret, url=sim.endpoint)
