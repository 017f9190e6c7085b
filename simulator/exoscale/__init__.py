"""The exoscale API v2 simulator, built from the OpenAPI spec the official `exoscale` client
ships (see docs/simulator.md, "exoscale").

    from stackfleet.simulator.exoscale import embedded
    with embedded() as api:      # in-process, on loopback, state under $STACKFLEET_HOME
        Client(api.api_key, api.secret, url=api.url)

Imports nothing from the client side (stackfleet.provisioners, stackfleet.cli).
"""

from stackfleet.simulator.exoscale.app import Endpoint, ExoscaleSimulator, embedded
from stackfleet.simulator.exoscale.config import ExoscaleConfig

__all__ = ["Endpoint", "ExoscaleConfig", "ExoscaleSimulator", "embedded"]
