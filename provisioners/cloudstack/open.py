"""Open a CloudStack account: credentials as the `cs` client finds them, or the embedded
CloudStack simulator for `profile: simulator`.

`profile: simulator` starts the simulator in-process on a loopback port with its state
under $STACKFLEET_HOME, so `up`, `status` and `down` run as separate commands all see one
cloud. This is the `cloudstack` entry of provisioners/registry.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from stackfleet import state
from stackfleet.errors import BadInput
from stackfleet.provisioners import reach
from stackfleet.provisioners.base import Progress, Provisioner
from stackfleet.provisioners.cloudstack.credentials import Credentials, find_credentials

if TYPE_CHECKING:
    from stackfleet.provisioners.session import CloudTarget
    from stackfleet.simulator import FaultConfig

SIMULATOR_PROFILE = "simulator"
# Testing knobs for the embedded simulator (never read for a real cloud):
#   STACKFLEET_SIMULATOR_LATENCY         `simulator serve --latency` syntax
#   STACKFLEET_SIMULATOR_VM_LIMIT        the account's VM limit (default 20)
#   STACKFLEET_SIMULATOR_HOSTS           hosts per zone (default 4): host anti-affinity
#                                        places one etcd member per host
#   STACKFLEET_SIMULATOR_FAULTS          `simulator serve --faults` syntax, e.g.
#                                        "http5xx=0.05,drop=0.05,jobfail=0.1,slow=0.1,seed=7"
#   STACKFLEET_SIMULATOR_FAULT_COMMANDS  restrict the faults to these commands (comma list)
#   STACKFLEET_SIMULATOR_RATE_LIMIT      api.throttling: requests per second per account
#   STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH  vm.userdata.max.length (base64 characters)
#   STACKFLEET_SIMULATOR_HYPERVISOR      "qemu": boot the VMs as real guests (root; see
#                                        docs/minicloud.md); the spec's cloud.simulator too
#   STACKFLEET_SIMULATOR_MIRROR          the folder the guests' router serves on port 8090
# The embedded simulator answers like a quick cloud, so a demo takes seconds; override
# with STACKFLEET_SIMULATOR_LATENCY (the `simulator serve --latency` syntax).
EMBEDDED_LATENCY = "default=0.2,deployVirtualMachine=1,startVirtualMachine=0.5"


@contextmanager
def open_cloudstack(
    target: CloudTarget, on_progress: Progress | None = None
) -> Iterator[Provisioner]:
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.provisioner import CloudStackProvisioner

    with _credentials(target) as creds:
        yield CloudStackProvisioner(
            CloudStackAPI(creds),
            concurrency=target.concurrency,
            timeout_s=target.timeout_s,
            on_progress=on_progress,
        )


@contextmanager
def _credentials(target: CloudTarget) -> Iterator[Credentials]:
    if target.profile != SIMULATOR_PROFILE:
        yield find_credentials(target.profile, target.endpoint, profile_from=target.profile_from)
        return
    from stackfleet.simulator import Simulator, SimulatorConfig
    from stackfleet.simulator.config import parse_latency

    # STACKFLEET_SIMULATOR_STATE_DIR: one cloud for several homes (a CI pipeline's jobs).
    shared = os.environ.get("STACKFLEET_SIMULATOR_STATE_DIR", "").strip()
    directory = state.private_dir(Path(shared) if shared else state.home() / "simulator")
    latency = os.environ.get("STACKFLEET_SIMULATOR_LATENCY", EMBEDDED_LATENCY)
    sim = Simulator.start(
        SimulatorConfig(
            state_path=directory / "state.sqlite",
            latency=parse_latency(latency),
            request_log=directory / "requests.jsonl",
            vm_limit=_int_env("STACKFLEET_SIMULATOR_VM_LIMIT", 20),
            # Host anti-affinity places each etcd member on its own host: 5 need 5.
            hosts=_int_env("STACKFLEET_SIMULATOR_HOSTS", SimulatorConfig.hosts),
            faults=_faults_from_env(),
            rate_limit=_float_env("STACKFLEET_SIMULATOR_RATE_LIMIT"),
            userdata_max_length=_int_env(
                "STACKFLEET_SIMULATOR_USERDATA_MAX_LENGTH", SimulatorConfig.userdata_max_length
            ),
            hypervisor=target.simulator_hypervisor
            or os.environ.get("STACKFLEET_SIMULATOR_HYPERVISOR")
            or None,
            mirror=_mirror(target.simulator_mirror),
            remove_guests_on_exit=False,
        )
    )
    # The simulator's VMs are reachable inside its guests' namespace (QEMU) or nowhere.
    reach.confine(sim.namespace)
    # Its server threads share our stderr: a request the CLI abandoned (Ctrl-C, a timeout)
    # must not print socketserver's traceback there. Kept for --debug.
    sim.api_server.handle_error = _quiet_handle_error  # type: ignore[method-assign]
    try:
        yield Credentials(sim.endpoint, sim.api_key, sim.secret, "the embedded simulator")
    finally:
        sim.stop()


def _mirror(from_spec: str | None) -> Path | None:
    value = from_spec or os.environ.get("STACKFLEET_SIMULATOR_MIRROR", "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise BadInput(f"simulator mirror {value}: not a folder (give the artifact mirror's)")
    return path


def _faults_from_env() -> FaultConfig | None:
    from stackfleet.simulator import parse_faults

    text = os.environ.get("STACKFLEET_SIMULATOR_FAULTS", "").strip()
    if not text:
        return None
    return parse_faults(text, os.environ.get("STACKFLEET_SIMULATOR_FAULT_COMMANDS"))


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{name}={value!r}: not an integer") from None


def _float_env(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadInput(f"{name}={value!r}: not a number") from None


def _quiet_handle_error(request: object, client_address: object) -> None:
    logging.getLogger("stackfleet.simulator").debug(
        "embedded simulator: request from %s ended with an error", client_address, exc_info=True
    )
