"""Open the cloud a spec points at: the only place that picks a provisioner.

`profile: simulator` starts the embedded CloudStack simulator in-process on a loopback
port with its state under $STACKFLEET_HOME, so `up`, `status` and `down` run as separate
commands all see one cloud. Anything else finds credentials as the CloudStack
ecosystem does. The engine gets a Provisioner and never learns which.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stackfleet import state
from stackfleet.provisioners.base import Provisioner
from stackfleet.provisioners.cloudstack.jobs import Progress
from stackfleet.provisioners.credentials import Credentials, find_credentials

SIMULATOR_PROFILE = "simulator"
# The embedded simulator answers like a quick cloud, so a demo takes seconds; override
# with STACKFLEET_SIMULATOR_LATENCY (the `simulator serve --latency` syntax).
EMBEDDED_LATENCY = "default=0.2,deployVirtualMachine=1,startVirtualMachine=0.5"


@dataclass(frozen=True)
class CloudTarget:
    profile: str | None
    endpoint: str | None = None
    concurrency: int = 8
    timeout_s: float = 1800


@contextmanager
def open_cloud(target: CloudTarget, on_progress: Progress | None = None) -> Iterator[Provisioner]:
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.provisioner import CloudStackProvisioner

    with _credentials(target) as creds:
        api = CloudStackAPI(creds)
        yield CloudStackProvisioner(
            api,
            concurrency=target.concurrency,
            timeout_s=target.timeout_s,
            on_progress=on_progress,
        )


@contextmanager
def _credentials(target: CloudTarget) -> Iterator[Credentials]:
    if target.profile != SIMULATOR_PROFILE:
        yield find_credentials(target.profile, target.endpoint)
        return
    from stackfleet.simulator import Simulator, SimulatorConfig
    from stackfleet.simulator.config import parse_latency

    directory = state.private_dir(state.home() / "simulator")
    latency = os.environ.get("STACKFLEET_SIMULATOR_LATENCY", EMBEDDED_LATENCY)
    sim = Simulator.start(
        SimulatorConfig(
            state_path=directory / "state.sqlite",
            latency=parse_latency(latency),
            request_log=directory / "requests.jsonl",
            vm_limit=int(os.environ.get("STACKFLEET_SIMULATOR_VM_LIMIT", "20")),
        )
    )
    try:
        yield Credentials(sim.endpoint, sim.api_key, sim.secret, "the embedded simulator")
    finally:
        sim.stop()
