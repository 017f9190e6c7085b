"""The in-process exoscale simulator: start it on a loopback port, use its endpoint and keys,
stop it. `embedded()` is the entry point for `profile: simulator` with the exoscale provider."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stackfleet import state
from stackfleet.simulator.exoscale.config import ExoscaleConfig
from stackfleet.simulator.exoscale.requestlog import RequestLog
from stackfleet.simulator.exoscale.server import Backend, ExoscaleServer
from stackfleet.simulator.serving import StopOnExit, serve_in_thread, url
from stackfleet.simulator.state import Store

STATE_FILE = "exoscale.sqlite"
REQUEST_LOG = "exoscale-requests.jsonl"
# The embedded simulator answers like a quick cloud, so a demo takes seconds.
EMBEDDED_OPERATION_LATENCY = 0.2


class ExoscaleSimulator(StopOnExit):
    """Use `ExoscaleSimulator.start(cfg)`; it returns once the API listens."""

    def __init__(self, config: ExoscaleConfig) -> None:
        self.config = config
        self.store = Store(config.state_path)
        self.api_key, self.secret = _credentials(self.store, config.api_key, config.secret)
        self._log = RequestLog(config.request_log)
        self.backend = Backend(config, self.store, self.api_key, self.secret, self._log)
        self.api_server = ExoscaleServer((config.host, config.port), self.backend)
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, config: ExoscaleConfig | None = None) -> ExoscaleSimulator:
        sim = cls(config or ExoscaleConfig())
        port = sim.api_server.server_address[1]
        sim._thread = serve_in_thread(sim.api_server, f"exoscale-simulator-{port}")
        return sim

    @property
    def endpoint(self) -> str:
        """The URL to give the official client: `Client(key, secret, url=sim.endpoint)`."""
        return url(self.api_server, "/v2")

    @property
    def zone(self) -> str:
        return self.config.zone

    def stop(self) -> None:
        self.api_server.shutdown()
        self.api_server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._log.close()
        self.store.close()


def _credentials(store: Store, api_key: str | None, secret: str | None) -> tuple[str, str]:
    """Kept in the state file (0600), so restarts on one file keep them. Shaped as exoscale's:
    "EXO" and 24 hex digits for the key, 43 URL-safe characters for the secret."""
    with store.transaction() as tx:
        key = api_key or tx.meta("exoscale_api_key") or "EXO" + secrets.token_hex(12)
        sec = secret or tx.meta("exoscale_api_secret") or secrets.token_urlsafe(32)
        tx.set_meta("exoscale_api_key", key)
        tx.set_meta("exoscale_api_secret", sec)
    return key, sec


@dataclass(frozen=True)
class Endpoint:
    """What a client needs: the URL (the official client's `url=`), the key pair, the zone."""

    url: str
    api_key: str
    secret: str
    zone: str


@contextmanager
def embedded(
    directory: Path | None = None, operation_latency: float = EMBEDDED_OPERATION_LATENCY
) -> Iterator[Endpoint]:
    """Start the simulator on a loopback port for the duration of the block.

    Its state (and request log) lives in `directory`, by default <$STACKFLEET_HOME>/simulator,
    or $STACKFLEET_SIMULATOR_STATE_DIR when set (one cloud for several homes), so `up`,
    `status` and `down` run as separate commands see one cloud.
    """
    if directory is None:
        shared = os.environ.get("STACKFLEET_SIMULATOR_STATE_DIR", "").strip()
        directory = Path(shared) if shared else state.home() / "simulator"
    directory = state.private_dir(directory)
    sim = ExoscaleSimulator.start(
        ExoscaleConfig(
            state_path=directory / STATE_FILE,
            request_log=directory / REQUEST_LOG,
            operation_latency=operation_latency,
        )
    )
    try:
        yield Endpoint(sim.endpoint, sim.api_key, sim.secret, sim.zone)
    finally:
        sim.stop()
