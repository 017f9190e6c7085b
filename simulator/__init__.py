"""The embedded Apache CloudStack API simulator (see docs/simulator.md).

    from stackfleet.simulator import Simulator, SimulatorConfig
    with Simulator.start(SimulatorConfig()) as sim:
        sim.endpoint, sim.api_key, sim.secret

Imports nothing from the client side (stackfleet.provisioners, stackfleet.cli).
"""

from stackfleet.simulator.app import Simulator
from stackfleet.simulator.config import FaultConfig, SimulatorConfig, parse_faults, parse_latency

__all__ = ["FaultConfig", "Simulator", "SimulatorConfig", "parse_faults", "parse_latency"]
