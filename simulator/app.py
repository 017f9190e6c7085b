"""The in-process simulator: start it on a port, use its endpoint and keys, stop it."""

from __future__ import annotations

import os
import threading

from stackfleet.errors import BadInput
from stackfleet.simulator import catalog as cat
from stackfleet.simulator.commands import load_all
from stackfleet.simulator.commands.security_groups import ensure_default
from stackfleet.simulator.config import SimulatorConfig
from stackfleet.simulator.hypervisor import NAMES, ExternalHosts, Hypervisor
from stackfleet.simulator.metadata import MetadataServer, PasswordHandler, vm_by_address
from stackfleet.simulator.requestlog import RequestLog
from stackfleet.simulator.server import ApiServer, Backend
from stackfleet.simulator.serving import StopOnExit, serve_in_thread, url
from stackfleet.simulator.state import Store, Tx


class Simulator(StopOnExit):
    """Use `Simulator.start(cfg)`; it returns once the API (and metadata) servers listen."""

    def __init__(self, config: SimulatorConfig) -> None:
        load_all()
        self.config = config
        self.store = Store(config.state_path)
        self.api_key, self.secret = self.store.credentials(config.api_key, config.secret)
        with self.store.transaction() as tx:
            ensure_default(tx)
            tx.set_meta("hosts", str(config.hosts))
            self.hypervisor_name = _choose_hypervisor(tx, config.hypervisor)
        if self.hypervisor_name == "qemu":
            self.store.hypervisor = self._qemu()
        elif self.hypervisor_name == "external":
            self.store.hypervisor = ExternalHosts()
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

    def _qemu(self) -> Hypervisor:
        from stackfleet.simulator.qemu.hypervisor import QemuHypervisor

        if self.config.state_path is None:
            raise BadInput("--hypervisor qemu needs a state file (--state): its router reads it")
        return QemuHypervisor(
            self.config.state_path,
            self.config.state_path.parent / "qemu",
            mirror=self.config.mirror,
            owner_pid=os.getpid() if self.config.remove_guests_on_exit else None,
        )

    @property
    def namespace(self) -> str | None:
        """The network namespace the guests' addresses live in (QEMU only)."""
        return getattr(self.store.hypervisor, "namespace", None)

    @classmethod
    def start(cls, config: SimulatorConfig | None = None) -> Simulator:
        sim = cls(config or SimulatorConfig())
        for server in sim._servers:
            sim._threads.append(serve_in_thread(server, f"simulator-{server.server_address[1]}"))
        return sim

    @property
    def endpoint(self) -> str:
        return url(self.api_server, "/client/api")

    @property
    def metadata_url(self) -> str | None:
        if self.metadata_server is None:
            return None
        return url(self.metadata_server, "/latest/")

    @property
    def password_url(self) -> str | None:
        if self.password_server is None:
            return None
        return url(self.password_server, "/")

    @property
    def zones(self) -> list[str]:
        return [z.name for z in cat.ZONES]

    def stop(self) -> None:
        self.store.hypervisor.close(remove_all=self.config.remove_guests_on_exit)
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._log.close()
        self.store.close()


def _choose_hypervisor(tx: Tx, wanted: str | None) -> str:
    """The state file keeps its hypervisor while it has VMs: guests cannot change hands."""
    current = tx.meta("hypervisor") or "simulator"
    if wanted is None or wanted == current:
        return current
    if wanted not in NAMES:
        raise BadInput(f"hypervisor {wanted!r}: expected one of {', '.join(NAMES)}")
    live = [v for v in tx.all("vm") if not v.get("removed") and v["state"] != "Destroyed"]
    if live:
        raise BadInput(
            f"this simulator's state has {len(live)} VM(s) on the {current} hypervisor; "
            f"remove them (stackfleet down) before switching to {wanted}"
        )
    tx.set_meta("hypervisor", wanted)
    return wanted
