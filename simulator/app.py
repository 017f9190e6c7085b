"""The in-process simulator: start it on a port, use its endpoint and keys, stop it."""

from __future__ import annotations

import threading
from types import TracebackType

from stackfleet.simulator import catalog as cat
from stackfleet.simulator.commands import load_all
from stackfleet.simulator.commands.security_groups import ensure_default
from stackfleet.simulator.config import SimulatorConfig
from stackfleet.simulator.metadata import MetadataServer, PasswordHandler, vm_by_address
from stackfleet.simulator.requestlog import RequestLog
from stackfleet.simulator.server import ApiServer, Backend
from stackfleet.simulator.state import Store


class Simulator:
    """Use `Simulator.start(cfg)`; it returns once the API (and metadata) servers listen."""

    def __init__(self, config: SimulatorConfig) -> None:
        load_all()
        self.config = config
        self.store = Store(config.state_path)
        self.api_key, self.secret = self.store.credentials(config.api_key, config.secret)
        with self.store.transaction() as tx:
            ensure_default(tx)
            tx.set_meta("hosts", str(config.hosts))
        self._log = RequestLog(config.request_log)
        backend = Backend(config, self.store, self.api_key, self.secret, self._log)
        self._servers: list[ApiServer | MetadataServer] = []
        self._threads: list[threading.Thread] = []
        self.api_server = ApiServer((config.host, config.port), backend)
        self._servers.append(self.api_server)
        self.metadata_server: MetadataServer | None = None
        self.password_server: MetadataServer | None = None
        lookup = vm_by_address(self.store)
        if config.metadata_port is not None:
            self.metadata_server = MetadataServer(
                (config.metadata_host, config.metadata_port), lookup
            )
            self._servers.append(self.metadata_server)
        if config.password_port is not None:
            self.password_server = MetadataServer(
                (config.metadata_host, config.password_port), lookup, PasswordHandler
            )
            self._servers.append(self.password_server)

    @classmethod
    def start(cls, config: SimulatorConfig | None = None) -> Simulator:
        sim = cls(config or SimulatorConfig())
        for server in sim._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                args=(0.05,),
                daemon=True,
                name=f"simulator-{server.server_address[1]}",
            )
            thread.start()
            sim._threads.append(thread)
        return sim

    @property
    def endpoint(self) -> str:
        host, port = self.api_server.server_address[:2]
        return f"http://{_url_host(str(host))}:{port}/client/api"

    @property
    def metadata_url(self) -> str | None:
        if self.metadata_server is None:
            return None
        host, port = self.metadata_server.server_address[:2]
        return f"http://{_url_host(str(host))}:{port}/latest/"

    @property
    def password_url(self) -> str | None:
        if self.password_server is None:
            return None
        host, port = self.password_server.server_address[:2]
        return f"http://{_url_host(str(host))}:{port}/"

    @property
    def zones(self) -> list[str]:
        return [z.name for z in cat.ZONES]

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._log.close()
        self.store.close()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
