"""Fixtures: a real simulator on a loopback port per test (in-memory SQLite, no latency)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_apiclient import Api

from stackfleet.simulator import Simulator, SimulatorConfig


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator.start(SimulatorConfig()) as s:
        yield s


@pytest.fixture
def api(sim: Simulator) -> Api:
    return Api(sim.endpoint, sim.api_key, sim.secret)
